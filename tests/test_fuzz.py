"""Fuzz the readers: random and mutated bytes, random array shapes and dtypes.

Whatever the input, a reader either returns a well-formed result or raises CnnlabError (one
line); no other exception escapes.
"""

from __future__ import annotations

import io
import pickle
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnlab.data.decode import decode_image
from cnnlab.data.load import LoadOptions, read_source
from cnnlab.data.sources.cifar import safe_unpickle
from cnnlab.data.sources.csvindex import CsvColumns, read_csv_index
from cnnlab.data.sources.idx import read_idx
from cnnlab.errors import CnnlabError

FUZZ = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WORK = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))


def _image_bytes(fmt: str, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)
    img = Image.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


SEEDS = [_image_bytes("PNG"), _image_bytes("JPEG"), _image_bytes("GIF", "P"),
         _image_bytes("BMP"), _image_bytes("PNG", "RGBA"), _image_bytes("TIFF")]


@st.composite
def mutated(draw, seeds: list[bytes]) -> bytes:  # noqa: ANN001
    """A valid file with random bytes overwritten, inserted or cut off."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        action = draw(st.sampled_from(["set", "insert", "cut"]))
        chunk = draw(st.binary(min_size=1, max_size=8))
        if action == "set":
            data[pos:pos + len(chunk)] = chunk
        elif action == "insert":
            data[pos:pos] = chunk
        else:
            del data[pos:]
    return bytes(data)


def _file(name: str, data: bytes) -> Path:
    path = WORK / name
    path.write_bytes(data)
    return path


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), mutated(SEEDS)),
       ext=st.sampled_from([".png", ".jpg", ".gif", ".bmp", ".tif"]),
       channels=st.sampled_from([1, 3]))
def test_image_decoder(data: bytes, ext: str, channels: int):
    path = _file("img" + ext, data)
    try:
        out = decode_image(path, (8, 8), channels)
    except CnnlabError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert out.dtype == np.uint8 and out.shape == (channels, 8, 8)


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


NPY_SEEDS = [_npy_bytes(np.zeros((3, 4, 4), np.uint8)), _npy_bytes(np.ones((2, 5), np.float32))]

DTYPES = ["u1", "i1", "u2", "i4", "i8", "f2", "f4", "f8", "?", "c8", "U2", "S3", "M8[s]"]


@st.composite
def arrays(draw, max_dims: int = 5) -> np.ndarray:  # noqa: ANN001
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=max_dims)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    n = int(np.prod(shape)) if shape else 1
    raw = draw(st.binary(min_size=n * dtype.itemsize, max_size=n * dtype.itemsize))
    if dtype.kind in "US":
        return np.frombuffer(raw[:n], dtype=np.uint8).reshape(shape).astype(dtype) if shape \
            else np.asarray("x", dtype=dtype)
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


@FUZZ
@given(images=st.one_of(arrays(), st.binary(max_size=200), mutated(NPY_SEEDS)),
       labels=st.one_of(arrays(max_dims=2), st.binary(max_size=64)))
def test_npy_reader(images, labels):  # noqa: ANN001
    folder = WORK / "npy"
    folder.mkdir(exist_ok=True)
    for name, value in (("d_images.npy", images), ("d_labels.npy", labels)):
        if isinstance(value, bytes):
            (folder / name).write_bytes(value)
        else:
            np.save(folder / name, value)
    try:
        data = read_source(folder, LoadOptions(format="npy", use_cache=False))
    except CnnlabError as exc:
        assert "\n" not in str(exc)
        return
    assert data.images.dtype.is_floating_point is False and data.images.ndim == 4
    assert len(data.labels) == len(data.images)


@FUZZ
@given(x=arrays(), y=arrays(max_dims=2), key=st.sampled_from(["x", "images", "X_train", "z"]))
def test_npz_reader(x: np.ndarray, y: np.ndarray, key: str):
    path = WORK / "d.npz"
    np.savez(path, **{key: x, "y" if key == "x" else "labels": y})
    try:
        data = read_source(path, LoadOptions(format="npy", use_cache=False))
    except CnnlabError:
        return
    assert data.images.ndim == 4 and len(data.labels) == len(data.images)


def _idx(dims: list[int], dtype_code: int = 0x08, extra: bytes = b"") -> bytes:
    size = int(np.prod(dims)) if dims else 0
    return bytes([0, 0, dtype_code, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) \
        + bytes(size) + extra


@FUZZ
@given(data=st.one_of(st.binary(max_size=64),
                      st.binary(max_size=64).map(lambda b: b"\0\0\x08\x03" + b),
                      mutated([_idx([2, 3, 3]), _idx([4], 0x0D), _idx([1, 2, 2, 2], 0x0B)])))
def test_idx_reader(data: bytes):
    path = _file("t-images-idx3-ubyte", data)
    try:
        arr = read_idx(path)
    except CnnlabError as exc:
        assert str(path) in str(exc)
        return
    assert isinstance(arr, np.ndarray)


CIFAR_SEEDS = [pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]},
                            protocol=p) for p in (2, 4)]


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), mutated(CIFAR_SEEDS)))
@example(data=b"P")  # found by this test: pickle's two-line "persistent id" error
def test_cifar_unpickler(data: bytes):
    path = _file("data_batch_1", data)
    try:
        out = safe_unpickle(path)
    except CnnlabError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return
    assert isinstance(out, dict)


CSV_ALPHABET = st.sampled_from(list("abc01,\n\"./\\ -_:\x00é") + ["filename", "numeric_label",
                                                                  "semantic_label", "task",
                                                                  "partition", "train", "0.png",
                                                                  "../", "\r\n"])


@FUZZ
@given(text=st.lists(CSV_ALPHABET, max_size=60).map("".join),
       task=st.sampled_from([None, "a", "t"]))
def test_csv_index_reader(text: str, task: str | None):
    root = WORK / "csv"
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4)).save(root / "images" / "0.png")
    path = root / "index.csv"
    path.write_text("filename,numeric_label\n0.png,0\n" + text, encoding="utf-8")
    try:
        files, parts, classes, labels, ids, notes = read_csv_index(path, None, CsvColumns(),
                                                                   task)
    except CnnlabError as exc:
        assert "\n" not in str(exc)
        return
    assert len(files) == len(labels) == len(ids) == len(parts) >= 1
    assert all(f.resolve().is_relative_to((root / "images").resolve()) for f in files)
