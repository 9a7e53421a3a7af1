"""Every source format becomes the same ImageSet; splits, cache and statistics behave."""

from __future__ import annotations

import csv
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digits_arrays, pattern_images, write_image_folder
from PIL import Image

from cnnlab.data import LoadOptions, load_data
from cnnlab.data.imageset import ImageSet
from cnnlab.data.inspect import inspect_data
from cnnlab.data.load import detect_format, read_source
from cnnlab.data.offline_augment import write_augmented
from cnnlab.data.sources import registry
from cnnlab.data.sources.arrayset import read_arrays
from cnnlab.data.sources.registry import register_source
from cnnlab.data.sources.source import Source
from cnnlab.data.stats import channel_mean_std
from cnnlab.errors import DataError


def test_digits_default_is_stratified_three_way_split():
    d = load_data(None)
    sizes = {n: len(s) for n, s in d.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(0.2 * 1797, abs=2)
    assert sizes["val"] == pytest.approx(0.2 * 1797, abs=2)
    assert d.train.images.dtype == torch.uint8 and d.train.images.shape[1:] == (1, 8, 8)
    # stratified: every class in every split
    for _, s in d.items():
        assert min(s.class_counts()) > 0
    # deterministic for a seed, different for another
    again = load_data(None)
    assert again.test.ids == d.test.ids
    other = load_data(None, LoadOptions(seed=1))
    assert other.test.ids != d.test.ids


def test_folder_with_partitions_and_cache(tmp_path: Path):
    root = write_image_folder(tmp_path / "data", n_per_class=8, partitions=True)
    assert detect_format(root) == "folder"
    d = load_data(root, LoadOptions(image_size=12))
    assert d.classes == ["class0", "class1", "class2"]
    assert len(d.train) == 18 and len(d.val) == 6 and d.test is None
    assert d.train.images.shape[1:] == (3, 12, 12)
    assert all(i.startswith("train/") for i in d.train.ids)
    assert d.train.meta["cache"] == "written"
    d2 = load_data(root, LoadOptions(image_size=12))
    assert d2.train.meta["cache"] == "hit"
    assert torch.equal(d2.train.images, d.train.images)
    # the cache is keyed by the resize policy too
    d3 = load_data(root, LoadOptions(image_size=10))
    assert d3.train.images.shape[-1] == 10


def test_folder_decodes_pixels_and_converts_channels(tmp_path: Path):
    root = tmp_path / "f"
    for c, val in (("a", 10), ("b", 200)):
        (root / c).mkdir(parents=True)
        for i in range(5):
            Image.new("RGB", (20, 10), (val, val, val)).save(root / c / f"{i}.png")
    d = load_data(root, LoadOptions(image_size=8, channels=1, val_split=0.2, test_split=0.2))
    assert d.train.images.shape[1:] == (1, 8, 8)
    for _, s in d.items():
        for img, lab in zip(s.images, s.labels, strict=True):
            assert int(img.float().mean().round()) == (10 if lab == 0 else 200)


def test_grayscale_files_stay_single_channel(tmp_path: Path):
    root = tmp_path / "g"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (9, 9), 30 * i).save(root / c / f"{i}.png")
    assert load_data(root, LoadOptions(image_size=9)).train.channels == 1


def _write_eecs445(tmp_path: Path) -> Path:
    root = tmp_path / "landmarks"
    (root / "images").mkdir(parents=True)
    x, y = pattern_images(10, 16, 4)
    rows = []
    names = ["Colosseum", "Petronas", "Rushmore", "Hofburg"]
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        fn = f"{i:05d}.png"
        Image.fromarray(img).save(root / "images" / fn)
        part = ["train", "train", "val", "test"][i % 4]
        task = "target" if lab < 2 else "source"
        num = lab if task == "target" else lab - 2
        rows.append([fn, names[lab], part, num, task])
    with open(root / "landmarks.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "semantic_label", "partition", "numeric_label", "task"])
        w.writerows(rows)
    return root


def test_csv_index_tasks_partitions_and_labels(tmp_path: Path):
    root = _write_eecs445(tmp_path)
    csv_path = root / "landmarks.csv"
    assert detect_format(root) == "csv"
    with pytest.raises(DataError, match="several tasks"):
        load_data(csv_path)
    d = load_data(csv_path, LoadOptions(task="target", image_size=16))
    assert d.classes == ["Colosseum", "Petronas"]
    assert len(d.train) == 10 and len(d.val) == 5 and len(d.test) == 5
    # labels follow numeric_label, and the pixels match the class pattern
    x, y = pattern_images(10, 16, 4)
    first = d.train.ids[0]
    i = int(first.split(".")[0])
    assert d.train.labels[0] == y[i]
    assert torch.equal(d.train.images[0], torch.from_numpy(x[i]).permute(2, 0, 1))


def test_csv_refuses_paths_escaping_the_root(tmp_path: Path):
    root = tmp_path / "d"
    root.mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    (root / "index.csv").write_text("filename,semantic_label\n../secret.png,a\nok.png,b\n")
    with pytest.raises(DataError, match="escapes the data root"):
        load_data(root / "index.csv")
    (root / "index.csv").write_text("filename,semantic_label\n/etc/passwd,a\n")
    with pytest.raises(DataError, match="absolute path"):
        load_data(root / "index.csv")


def test_npy_layout_with_unlabeled_test(digits_npy: Path):
    assert detect_format(digits_npy) == "npy"
    d = load_data(digits_npy)
    assert (len(d.train), len(d.val), len(d.test)) == (1000, 400, 397)
    assert (d.test.labels == -1).all()
    assert d.train.images.shape[1:] == (1, 8, 8)
    # a single file of the layout works too
    d2 = load_data(digits_npy / "digits_images.npy")
    assert len(d2.train) == 1000


def test_npy_hwc_float_arrays_and_npz(tmp_path: Path):
    x, y = pattern_images(6, 10, 2)
    np.savez(tmp_path / "set.npz", x=x.astype(np.float32) / 255.0, y=y)
    d = load_data(tmp_path / "set.npz", LoadOptions(test_split=0, val_split=0.25))
    assert d.train.images.shape[1:] == (3, 10, 10)
    assert d.test is None and len(d.val) == 3
    raw = read_source(tmp_path / "set.npz", LoadOptions())
    assert torch.equal(raw.images, torch.from_numpy(x).permute(0, 3, 1, 2))


def _write_cifar(folder: Path, n: int = 20) -> tuple[np.ndarray, list[int]]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    for i in range(1, 3):
        with open(folder / f"data_batch_{i}", "wb") as fh:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, fh, protocol=2)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": data[:10], b"labels": labels[:10]}, fh, protocol=2)
    names = [f"c{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names}, fh, protocol=2)
    return data, labels


def test_cifar_batches(tmp_path: Path):
    folder = tmp_path / "cifar-10-batches-py"
    data, labels = _write_cifar(folder)
    assert detect_format(folder) == "cifar"
    raw = read_source(folder, LoadOptions())
    assert len(raw) == 50 and raw.classes == [f"c{i}" for i in range(10)]
    assert torch.equal(raw.images[0], torch.from_numpy(data[0].reshape(3, 32, 32)))
    assert raw.labels[:20].tolist() == labels
    assert set(raw.partition.tolist()) == {"train", "test"}


def _idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + \
        arr.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files(tmp_path: Path, gz: bool):
    x, y = digits_arrays(300)
    suffix = ".gz" if gz else ""
    opener = gzip.open if gz else open
    for name, arr in (("train-images-idx3-ubyte", x), ("train-labels-idx1-ubyte", y)):
        with opener(tmp_path / (name + suffix), "wb") as fh:
            fh.write(_idx_bytes(arr))
    assert detect_format(tmp_path) == "idx"
    raw = read_source(tmp_path, LoadOptions())
    assert torch.equal(raw.images[:, 0], torch.from_numpy(x))
    assert raw.labels.tolist() == y.tolist()


def test_resize_and_channel_options_for_arrays(digits_npy: Path):
    d = load_data(digits_npy, LoadOptions(image_size=16, channels=3))
    assert d.train.images.shape[1:] == (3, 16, 16)


def test_mean_std_uses_training_split_only(tmp_path: Path):
    # train images are dark, test images bright: statistics must come from train alone
    x = np.concatenate([np.full((20, 4, 4), 20, np.uint8), np.full((10, 4, 4), 240, np.uint8)])
    x[:10] = 40
    y = np.array([0, 1] * 15)
    np.save(tmp_path / "s_images.npy", x[:20])
    np.save(tmp_path / "s_labels.npy", y[:20])
    np.save(tmp_path / "s_test_images.npy", x[20:])
    np.save(tmp_path / "s_test_labels.npy", y[20:])
    d = load_data(tmp_path, LoadOptions(val_split=0.0))
    mean, std = channel_mean_std(d.train.images)
    assert mean[0] == pytest.approx(30 / 255, abs=1e-6)
    assert std[0] == pytest.approx(10 / 255, abs=1e-6)


def _tiny_source() -> Source:
    """A made-up format: a .tiny text file, one 4x4 grey image a line (label, 16 pixels)."""

    def detect(path: Path) -> bool:
        return path.is_file() and path.suffix == ".tiny"

    def read(path: Path, opts: LoadOptions, progress: object) -> ImageSet:
        rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
        images = rows[:, 1:].reshape(-1, 4, 4).astype(np.uint8)
        return read_arrays({"": (images, rows[:, 0])}, None, path, opts)

    return Source("tiny", read, detect)


def test_a_registered_source_needs_no_other_edit(tmp_path: Path, monkeypatch) -> None:
    # One Source and one register_source call: load, detection, --format, inspect and the
    # offline augmentation writer all take it from the registry.
    monkeypatch.setattr(registry, "SOURCES", dict(registry.SOURCES))  # gone after the test
    register_source(_tiny_source())
    labels = np.repeat([0, 1], 20)
    pixels = np.where(labels[:, None] == 0, 30, 220) + np.arange(40)[:, None] % 7
    path = tmp_path / "shapes.tiny"
    np.savetxt(path, np.column_stack([labels, pixels.repeat(16, axis=1)]), fmt="%d")

    assert detect_format(path) == "tiny"
    assert "tiny" in registry.format_names()
    d = load_data(path, LoadOptions(image_size=8))
    assert d.classes == ["0", "1"] and sum(len(s) for _, s in d.items()) == 40
    assert d.train.images.shape[1:] == (1, 8, 8) and d.train.meta["format"] == "tiny"
    assert d.train.meta["name"] == "shapes" and d.train.meta["path"] == str(path)
    bright = d.train.images.float().mean(dim=(1, 2, 3))
    assert bright[d.train.labels == 1].min() > bright[d.train.labels == 0].max()
    same = load_data(path, LoadOptions(format="tiny", image_size=8))
    assert torch.equal(same.train.images, d.train.images)

    summary, _ = inspect_data(path)
    assert summary["format"] == "tiny" and summary["num_images"] == 40
    res = write_augmented(path, tmp_path / "aug", "hflip", copies=1)
    assert res.augmented == res.counts["train"] // 2 > 0
    # ...and the settings model: --format tiny is a valid setting for train and the API.
    from cnnlab.settings import SETTINGS, SettingsError, resolve

    assert SETTINGS["format"].check("tiny") == "tiny"
    assert resolve({"data": str(path), "format": "tiny"}).format == "tiny"
    with pytest.raises(SettingsError, match="choose auto, folder.*tiny"):
        SETTINGS["format"].check("tinyy")


def test_format_errors_are_one_line_and_name_every_source(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not images")
    with pytest.raises(DataError) as undetected:
        load_data(notes)
    with pytest.raises(DataError) as unknown:
        load_data(notes, LoadOptions(format="jpeg"))
    for err in (undetected, unknown):
        msg = str(err.value)
        assert "\n" not in msg and all(name in msg for name in registry.SOURCES), msg
    assert "cannot tell the data format" in str(undetected.value)
    assert str(unknown.value).startswith("unknown format 'jpeg'; choose one of auto, folder")
