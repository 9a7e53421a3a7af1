"""Online augmentation ops, validation of the option string, and the offline writer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli, write_image_folder
from PIL import Image

from cnnlab.data.augment import OPS, build_augment
from cnnlab.errors import CnnlabError


def _batch(c: int = 3, b: int = 16, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, c, size, size, generator=g)


@pytest.mark.parametrize("spec", ["hflip=1", "vflip=1", "rotate=30", "grayscale=1",
                                  "jitter=0.4", "rrc=0.3", "crop=4", "blur=2", "noise=0.1"])
@pytest.mark.parametrize("channels", [1, 3])
def test_each_op_keeps_shape_dtype_range_and_changes_the_batch(spec: str, channels: int) -> None:
    if spec == "grayscale=1" and channels == 1:
        pytest.skip("grayscale of a grey image is the image")
    x = _batch(channels)
    torch.manual_seed(1)
    y = build_augment(spec)(x.clone())
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert not torch.allclose(y, x, atol=1e-3), f"{spec} did not change the batch"


def test_every_op_is_tested() -> None:
    assert set(OPS) == {"hflip", "vflip", "rotate", "grayscale", "jitter", "rrc", "crop", "blur",
                        "noise", "randaugment", "trivialaugment", "autoaugment", "erasing",
                        "kornia_randaugment", "kornia_trivialaugment"}
    # the policies and erasing are tested in tests/test_augment_policies.py


def test_flips_and_grayscale_do_exactly_what_they_say() -> None:
    x = _batch()
    assert torch.equal(build_augment("hflip=1")(x), x.flip(3))
    assert torch.equal(build_augment("vflip=1")(x), x.flip(2))
    assert torch.equal(build_augment("hflip=0,vflip=0,grayscale=0")(x), x)
    g = build_augment("grayscale=1")(x)
    assert torch.allclose(g[:, 0], g[:, 1]) and torch.allclose(g[:, 1], g[:, 2])
    assert torch.allclose(g[:, 0], x.mean(1))  # EECS 445: the channel mean
    torch.manual_seed(0)
    half = build_augment("hflip")(x)  # default p = 0.5: some flipped, some not
    flipped = [torch.equal(half[i], x[i].flip(2)) for i in range(len(x))]
    assert 0 < sum(flipped) < len(x)


def test_rotate_fills_corners_black_and_crop_only_translates() -> None:
    ones = torch.ones(32, 3, 32, 32)
    torch.manual_seed(0)
    r = build_augment("rotate=40")(ones)
    corners = r[:, :, 0, 0]
    assert (corners < 0.05).float().mean() > 0.8  # rotated corners are filled with black
    assert torch.allclose(r[:, :, 16, 16], torch.ones(32, 3), atol=1e-4)  # the centre stays
    x = _batch(b=8, size=16)
    torch.manual_seed(0)
    y = build_augment("crop=3")(x)
    pad = torch.nn.functional.pad(x, (3, 3, 3, 3))
    for i in range(8):
        assert any(torch.equal(y[i], pad[i, :, dy:dy + 16, dx:dx + 16])
                   for dy in range(7) for dx in range(7)), "crop must be a padded translation"


def test_blur_smooths_noise_and_noise_has_the_asked_std() -> None:
    x = _batch(b=8, size=32)
    torch.manual_seed(0)
    assert float(build_augment("blur=2")(x).std()) < 0.8 * float(x.std())
    mid = torch.full((8, 3, 32, 32), 0.5)
    d = build_augment("noise=0.05")(mid) - mid
    assert 0.04 < float(d.std()) < 0.06


def test_same_seed_same_augmentation() -> None:
    x = _batch()
    spec = "hflip,rotate=20,jitter=0.2,crop=4,rrc=0.5,blur=1,noise=0.02,grayscale=0.3"
    torch.manual_seed(5)
    a = build_augment(spec)(x.clone())
    torch.manual_seed(5)
    b = build_augment(spec)(x.clone())
    assert torch.equal(a, b)


@pytest.mark.parametrize("spec,msg", [("spin=3", "unknown augmentation 'spin'"),
                                      ("rotate=abc", "not a number"),
                                      ("hflip=2", "from 0 to 1"),
                                      ("crop=2.5", "whole number")])
def test_bad_specs_are_one_line_errors(spec: str, msg: str) -> None:
    with pytest.raises(CnnlabError, match=msg):
        build_augment(spec)


@pytest.mark.slow
def test_only_the_training_split_is_augmented(tmp_path: Path) -> None:
    """With heavy noise on train batches, val/test metrics are still those of clean images."""
    import cnnlab

    data = write_image_folder(tmp_path / "imgs", n_per_class=10, size=16)
    res = cnnlab.train(str(data), model="cnn", epochs=2, image_size=16, augment="noise=0.5",
                       out=str(tmp_path / "run"), verbose=False, report=False)
    best = res.history[res.best_epoch - 1]
    # metrics.json re-scores best.pt without augmentation; the epoch's val loss must match it.
    assert best["val_loss"] == pytest.approx(res.metrics["val"]["loss"], rel=1e-4)
    model = res.load()
    splits = cnnlab.data(str(data), image_size=16)
    again = model.evaluate(splits.test)
    assert again["loss"] == pytest.approx(res.metrics["test"]["loss"], rel=1e-3)


# ---- offline writer -----------------------------------------------------------------------
def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_offline_writer_csv_round_trips_through_train(tmp_path: Path) -> None:
    src = write_image_folder(tmp_path / "imgs", n_per_class=8, size=16, partitions=True)
    out = tmp_path / "aug"
    r = run_cli("augment", str(src), "--ops", "rotate=20,grayscale", "--copies", "2",
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    index = out / "augmented_imgs.csv"
    rows = _rows(index)
    assert list(rows[0]) == ["filename", "semantic_label", "partition", "numeric_label", "task"]
    train = [x for x in rows if x["partition"] == "train"]
    val = [x for x in rows if x["partition"] == "val"]
    n_train, n_val = 18, 6  # write_image_folder puts every 4th image in val
    assert len(val) == n_val and not any("_aug_" in x["filename"] for x in val)
    assert len(train) == 3 * n_train  # the original plus 2 copies
    aug = [x for x in train if "_aug_" in x["filename"]]
    assert len(aug) == 2 * n_train
    img = np.asarray(Image.open(out / "images" / aug[0]["filename"]))
    assert img.shape == (16, 16, 3)
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()
    assert {x["semantic_label"] for x in rows} == {"class0", "class1", "class2"}
    t = run_cli("train", str(index), "--epochs", "1", "--image-size", "16", "--no-report",
                "--out", str(tmp_path / "run"))
    assert t.returncode == 0, t.stderr
    sizes = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sizes["train"]["n"] == 3 * n_train and sizes["val"]["n"] == n_val


@pytest.mark.slow
def test_offline_writer_discard_original_and_csv_tasks(tmp_path: Path) -> None:
    src = write_image_folder(tmp_path / "imgs", n_per_class=4, size=12, classes=2)
    files = sorted((tmp_path / "imgs").rglob("*.png"))
    idx = tmp_path / "imgs" / "landmarks.csv"
    with open(idx, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "semantic_label", "partition", "numeric_label", "task"])
        for i, f in enumerate(files):
            lab = int(f.parent.name[-1])
            part = ["train", "train", "val", "test"][i % 4]
            w.writerow([str(f.relative_to(src)), f.parent.name, part, lab,
                        "source" if i % 2 else "target"])
    out = tmp_path / "aug"
    r = run_cli("augment", str(idx), "--ops", "grayscale", "--discard-original", "--out",
                str(out))
    assert r.returncode == 0, r.stderr
    rows = _rows(out / "augmented_landmarks.csv")
    assert len(rows) == len(files)  # one copy instead of each training original
    train = [x for x in rows if x["partition"] == "train"]
    assert train and all("_aug_0.png" in x["filename"] for x in train)
    assert {x["task"] for x in rows} == {"source", "target"}  # every task kept, like the seed
    from cnnlab.data.offline_augment import write_augmented

    with pytest.raises(CnnlabError, match="--force"):
        write_augmented(idx, out, "grayscale")
    again = write_augmented(idx, out, "grayscale", copies=1, force=True)  # keeps originals
    assert again.rows == len(files) + again.augmented
    with pytest.raises(CnnlabError, match="unknown augmentation"):
        write_augmented(idx, tmp_path / "x", "twirl")


def test_augment_takes_the_data_options_of_train_including_csv_columns(tmp_path: Path,
                                                                        cli) -> None:
    # `cnnlab augment` gets its data options from the settings, as train does: a CSV whose
    # columns have their own names is read with --path-column/--label-column/...
    src = write_image_folder(tmp_path / "imgs", n_per_class=4, size=12, classes=2)
    files = sorted(src.rglob("*.png"))
    idx = src / "own.csv"
    with open(idx, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["img", "kind", "split"])
        for i, f in enumerate(files):
            w.writerow([str(f.relative_to(src)), f.parent.name, ["train", "val"][i % 2]])
    out = tmp_path / "aug"
    code, _, err = cli("augment", str(idx), "--ops", "hflip", "--out", str(out))
    assert code == 2 and "filename" in err  # the default columns are not in this file
    code, stdout, err = cli("augment", str(idx), "--ops", "hflip", "--out", str(out),
                            "--path-column", "img", "--label-column", "kind",
                            "--partition-column", "split")
    assert code == 0, err
    rows = _rows(out / "augmented_own.csv")
    assert {r["kind"] for r in rows} == {"class0", "class1"}
    assert sum("_aug_" in r["img"] for r in rows) == len(files) // 2  # one copy per train image
    code, _, err = cli("augment", str(idx), "--ops", "hflip", "--out", str(out), "--format",
                       "cvs")
    assert code == 2 and "did you mean 'csv'" in err
