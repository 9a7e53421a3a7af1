"""Hostile npy/npz, CIFAR and IDX sets: labels bounded, -1 never dropped silently, no crash
(issue 18, items 2, 3, 4, 8)."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from clitools import Zygote, assert_one_line_error
from conftest import digits_arrays

from cnnlab.data import cache
from cnnlab.data.load import LoadOptions, load_data, read_source
from cnnlab.errors import DataError


def npy_set(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    root.mkdir(parents=True)
    np.save(root / "d_images.npy", x)
    np.save(root / "d_labels.npy", y)
    return root


def cifar_dir(root: Path, data: object, labels: object) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": data, b"labels": labels}, fh, protocol=2)
    return folder


def idx_bytes(arr: np.ndarray, code: int = 0x08, fmt: str = ">u1") -> bytes:
    return bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + \
        arr.astype(fmt).tobytes()


def idx_set(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    root.mkdir(parents=True)
    (root / "train-images-idx3-ubyte").write_bytes(idx_bytes(x))
    (root / "train-labels-idx1-ubyte").write_bytes(idx_bytes(y, 0x0C, ">i4"))
    return root


X, Y = digits_arrays(600)


def test_one_huge_npy_label_is_refused_not_trained(tmp_path: Path):
    y = Y.copy()
    y[17] = 99_999  # below MAX_CLASSES, but 600 images cannot hold 100000 classes
    with pytest.raises(DataError, match=r"d_labels.npy .*label 99999 is too large for 600 "
                                        "images"):
        read_source(npy_set(tmp_path / "n", X, y), LoadOptions())


def test_huge_npz_label_is_refused(tmp_path: Path):
    y = Y.copy()
    y[0] = 5000
    np.savez(tmp_path / "s.npz", x=X, y=y)
    with pytest.raises(DataError, match=r"s.npz.*label 5000 is too large"):
        read_source(tmp_path / "s.npz", LoadOptions())


def test_huge_idx_label_is_refused(tmp_path: Path):
    y = Y.astype(np.int64)
    y[3] = 70_000
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.*label 70000 is too large"):
        read_source(idx_set(tmp_path / "i", X[:, :8, :8], y), LoadOptions())


def test_huge_cifar_label_is_refused(tmp_path: Path):
    data = np.zeros((20, 3072), np.uint8)
    labels = [i % 2 for i in range(20)]
    labels[5] = 50_000
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*label 50000 is too large"):
        read_source(cifar_dir(tmp_path, data, labels), LoadOptions())


def test_sparse_npy_labels_warn_about_empty_classes(tmp_path: Path):
    y = np.where(Y % 2 == 0, 0, 7)
    data = read_source(npy_set(tmp_path / "n", X, y), LoadOptions())
    assert len(data.classes) == 8
    assert any("6 of 8 classes have no images (1, 2, 3, 4, 5, ...)" in n
               for n in data.meta["data_notes"])


def test_npy_minus_one_is_refused_unless_declared_unlabeled(tmp_path: Path):
    y = Y.copy()
    y[:25] = -1
    root = npy_set(tmp_path / "n", X, y)
    with pytest.raises(DataError, match=r"25 negative label\(s\) such as -1.*--unlabeled-value "
                                        "-1"):
        read_source(root, LoadOptions())
    data = read_source(root, LoadOptions(unlabeled_value=-1))
    assert int((data.labels == -1).sum()) == 25
    assert any("25 image(s) labeled -1 used as unlabeled" in n for n in data.meta["data_notes"])
    splits = load_data(root, LoadOptions(unlabeled_value=-1))
    assert (splits.train.labels >= 0).all()


def test_another_unlabeled_value_is_mapped_and_minus_one_still_refused(tmp_path: Path):
    y = Y.copy()
    y[:10] = 255
    data = read_source(npy_set(tmp_path / "a", X, y), LoadOptions(unlabeled_value=255))
    assert int((data.labels == -1).sum()) == 10 and len(data.classes) == 10
    y[0] = -1
    with pytest.raises(DataError, match="negative label"):
        read_source(npy_set(tmp_path / "b", X, y), LoadOptions(unlabeled_value=255))


def test_cifar_data_as_strings_is_one_clear_error(tmp_path: Path):
    data = np.array([["7"] * 3072] * 4, dtype=object)
    folder = cifar_dir(tmp_path, data, [0, 1, 0, 1])
    with pytest.raises(DataError, match=r"data_batch_1: CIFAR 'data' must hold integer pixel "
                                        "values"):
        read_source(folder, LoadOptions())


def test_cifar_pixels_out_of_range_are_not_wrapped(tmp_path: Path):
    data = np.full((4, 3072), 300, dtype=np.int64)
    with pytest.raises(DataError, match=r"outside 0-255 \(300..300\)"):
        read_source(cifar_dir(tmp_path, data, [0, 1, 0, 1]), LoadOptions())


def test_cifar_labels_beyond_the_names_name_the_folder(tmp_path: Path):
    folder = cifar_dir(tmp_path, np.zeros((4, 3072), np.uint8), [0, 1, 2, 3])
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [b"a", b"b"]}, fh, protocol=2)
    with pytest.raises(DataError, match=r"cifar-10-batches-py: label 3 has no class name"):
        read_source(folder, LoadOptions())


def test_resize_that_cannot_fit_in_memory_is_refused_with_the_figure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(cache, "available_memory", lambda: 64 * 2**20)
    root = npy_set(tmp_path / "n", X, Y)
    with pytest.raises(DataError, match=r"600 images resized to 1x1000x1000 need 572.2 MB, more "
                                        r"than the memory available \(64.0 MB\)"):
        read_source(root, LoadOptions(image_size=1000))


@pytest.mark.parametrize("case", ["cifar strings", "npy label 99999", "npy -1", "idx huge"])
def test_cli_one_line_exit_2(zygote: Zygote, tmp_path: Path, case: str):
    if case == "cifar strings":
        path, words = cifar_dir(tmp_path, np.array([["a"] * 3072] * 2, dtype=object), [0, 1]), \
            ("data_batch_1", "integer pixel values")
    elif case == "npy label 99999":
        y = Y.copy()
        y[0] = 99_999
        path, words = npy_set(tmp_path / "n", X, y), ("d_labels.npy", "too large")
    elif case == "npy -1":
        y = Y.copy()
        y[3] = -1
        path, words = npy_set(tmp_path / "n", X, y), ("d_labels.npy", "negative label")
    else:
        y = Y.astype(np.int64)
        y[0] = 2**30
        path, words = idx_set(tmp_path / "i", X, y), ("idx1-ubyte", "too large")
    res = zygote.run("train", path, "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(res, *words)
    assert not (tmp_path / "run").exists()


def test_one_2d_image_is_told_how_to_pass_it():
    """A single H x W image is ambiguous with rows of flattened images: the error says how to
    give one image, and (1, H, W) is read as one image."""
    from cnnlab.data.sources.common import to_uint8_nchw

    with pytest.raises(DataError, match=r"^input: a 2-D array is rows of flattened images, and "
                       r"rows of length 8 are not square images \(one 8x8 image: give it as "
                       r"shape \(1, 8, 8\)\)$"):
        to_uint8_nchw(np.zeros((8, 8)), "input")
    assert to_uint8_nchw(np.zeros((1, 8, 8)), "input").shape == (1, 1, 8, 8)
    assert to_uint8_nchw(np.zeros((3, 64)), "input").shape == (3, 1, 8, 8)  # rows still work
