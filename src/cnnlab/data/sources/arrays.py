"""NumPy arrays: the QuickDraw-homework .npy layout, or one .npz file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.data.sources.arrayset import read_arrays
from cnnlab.data.sources.source import Source
from cnnlab.errors import DataError

NPZ_KEYS = {
    "train": [("x_train", "y_train"), ("X_train", "y_train"), ("train_images", "train_labels"),
              ("x", "y"), ("X", "y"), ("X", "Y"), ("images", "labels"), ("data", "labels"),
              ("data", "targets")],
    "val": [("x_val", "y_val"), ("X_val", "y_val"), ("x_dev", "y_dev"), ("val_images",
                                                                          "val_labels")],
    "test": [("x_test", "y_test"), ("X_test", "y_test"), ("test_images", "test_labels")],
}


def load_npy(path: Path) -> np.ndarray:
    """np.load without pickles; memory-mapped so big arrays are read lazily."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataError(f"{path}: cannot read .npy file ({exc.strerror or exc})") from None
    if magic != b"\x93NUMPY":
        raise DataError(f"{path}: not a valid .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{path}: object arrays (pickles) are not allowed") from None
        raise DataError(f"{path}: not a valid .npy file ({str(exc)[:160]})") from None
    except MemoryError:
        raise DataError(f"{path}: array too large to map into memory") from None
    except Exception as exc:  # noqa: BLE001 - a damaged header can make numpy raise anything
        raise DataError(f"{path}: cannot read .npy file ({type(exc).__name__}: "
                        f"{str(exc)[:160]})") from None


def find_npy_layout(path: Path) -> dict[str, tuple[Path, Path | None]]:
    """{partition: (images, labels or None)} for a folder or one *_images.npy file."""
    if path.is_file():
        if not path.name.endswith("_images.npy"):
            raise DataError(f"{path}: expected a file named <name>_images.npy")
        folder, stems = path.parent, [path.name[: -len("_images.npy")]]
    else:
        folder = path
        stems = [p.name[: -len("_images.npy")] for p in sorted(folder.glob("*_images.npy"))]
    stems = [s for s in stems if not s.endswith(("_dev", "_test", "_val"))] or stems
    if not stems:
        raise DataError(f"{path}: no <name>_images.npy files found")
    if len(stems) > 1:
        raise DataError(f"{path}: several data sets ({', '.join(stems)}); pass one "
                        "<name>_images.npy file")
    stem = stems[0]
    out: dict[str, tuple[Path, Path | None]] = {}
    for part, suffix in (("train", ""), ("val", "_dev"), ("test", "_test")):
        img = folder / f"{stem}{suffix}_images.npy"
        lab = folder / f"{stem}{suffix}_labels.npy"
        if img.is_file():
            out[part] = (img, lab if lab.is_file() else None)
    if "train" in out and out["train"][1] is None:
        raise DataError(f"{out['train'][0]}: missing labels file {stem}_labels.npy")
    return out


def read_npz(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """{partition: (images, labels)} from an .npz with x/y-style keys."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as exc:
        if "pickle" in str(exc).lower() or "object" in str(exc).lower():
            raise DataError(f"{path}: object arrays (pickles) are not allowed") from None
        raise DataError(f"{path}: cannot read .npz file ({str(exc)[:160]})") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: cannot read .npz file ({str(exc)[:160]})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged archive can make numpy raise anything
        raise DataError(f"{path}: cannot read .npz file ({type(exc).__name__}: "
                        f"{str(exc)[:160]})") from None
    out: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for part, pairs in NPZ_KEYS.items():
        for xk, yk in pairs:
            if xk in data:
                out[part] = (data[xk], data.get(yk))
                break
    if "train" not in out:
        raise DataError(f"{path}: no image array found (keys: {', '.join(data) or 'none'}; "
                        "expected x/y, images/labels or x_train/y_train)")
    if out["train"][1] is None:
        raise DataError(f"{path}: no labels found for the training images")
    return out


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.name.lower().endswith((".npy", ".npz"))
    return any(path.glob("*_images.npy")) or any(path.glob("*.npz"))


def _read(path: Path, opts: LoadOptions, progress: Progress) -> ImageSet:
    if path.suffix == ".npz":
        return read_arrays(read_npz(path), None, path, opts)
    layout = find_npy_layout(path)
    loaded = {p: (load_npy(x), load_npy(y) if y else None) for p, (x, y) in layout.items()}
    data = read_arrays(loaded, None, path, opts, files=layout)
    if "train" in layout:
        data.meta.setdefault("name", layout["train"][0].name[: -len("_images.npy")])
    return data


SOURCE = Source("npy", _read, _detect, priority=20)
