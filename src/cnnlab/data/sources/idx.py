"""MNIST-style IDX files, raw or gzip-compressed."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.data.sources.arrayset import read_arrays
from cnnlab.data.sources.source import Source
from cnnlab.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file into a numpy array, validating the header against the data size."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_DTYPES[raw[2]])
    need = dtype.itemsize * math.prod(dims)  # Python ints: a crafted header cannot overflow
    body = raw[4 + 4 * ndim:]
    if len(body) != need:
        raise DataError(f"{path}: IDX header promises {need} bytes of data, file has {len(body)}")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def find_idx_pairs(path: Path) -> dict[str, tuple[Path, Path | None]]:
    """{partition: (images, labels)} from a folder of IDX files, or one images file."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if "idx" in p.name)
    images = [p for p in files if "idx3" in p.name or "images" in p.name]
    if not images:
        raise DataError(f"{path}: no IDX image files (*-images-idx3-ubyte[.gz]) found")
    out: dict[str, tuple[Path, Path | None]] = {}
    for img in images:
        name = img.name
        part = "test" if name.startswith(("t10k", "test")) else "train"
        lab_name = name.replace("images", "labels").replace("idx3", "idx1")
        lab = img.parent / lab_name
        if part in out:
            raise DataError(f"{path}: several IDX image files for the {part} split")
        out[part] = (img, lab if lab.is_file() and lab != img else None)
    if "train" not in out:
        # A lone test pair (as in mnist10k) is the whole labeled pool, split like any other.
        out = {"": out.pop("test")}
    first = out.get("train", out.get(""))
    if first is None or first[1] is None:
        raise DataError(f"{images[0]}: no matching IDX labels file")
    return out


def _detect(path: Path) -> bool:
    if path.is_file():
        name = path.name.lower()
        # a .csv index whose name holds "idx" is still a CSV
        return ("idx" in name or name.endswith("ubyte")) and not name.endswith(".csv")
    return any(p.name for p in path.glob("*idx3-ubyte*"))


def _read(path: Path, opts: LoadOptions, progress: Progress) -> ImageSet:
    pairs = find_idx_pairs(path)
    loaded = {p: (read_idx(x), read_idx(y) if y else None) for p, (x, y) in pairs.items()}
    return read_arrays(loaded, None, path, opts, files=pairs)


SOURCE = Source("idx", _read, _detect, priority=30)
