"""CIFAR-10 / CIFAR-100 python pickle batches, read through a restricted unpickler."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.data.sources.arrayset import read_arrays
from cnnlab.data.sources.source import Source
from cnnlab.errors import DataError

# Only what numpy needs to rebuild arrays; anything else (os.system, eval, ...) is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def safe_unpickle(path: Path) -> dict:
    """Load a CIFAR batch; refuses any pickle that would import more than numpy arrays."""
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(io.BufferedReader(fh), encoding="bytes").load()
    except pickle.UnpicklingError as exc:  # some of its messages span two lines: one here
        raise DataError(f"{path}: unsafe or invalid pickle ({' '.join(str(exc).split())})") \
            from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - damaged pickles make the unpickler raise anything
        detail = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
        raise DataError(f"{path}: not a CIFAR batch file ({type(exc).__name__}"
                        f"{': ' + detail if detail else ''})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a CIFAR batch file (top level is not a dict)")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _names(meta: dict, key: str) -> list[str]:
    vals = meta.get(key)
    if not isinstance(vals, list):
        return []
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in vals]


def _batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = safe_unpickle(path)
    data = d.get("data")
    labels = d.get(label_key, d.get("labels"))
    if not isinstance(data, np.ndarray) or labels is None:
        raise DataError(f"{path}: CIFAR batch needs 'data' and '{label_key}' keys "
                        f"(found: {', '.join(map(str, d)) or 'none'})")
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: CIFAR 'data' must be [N, 3072], got {data.shape}")
    if not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
        raise DataError(f"{path}: CIFAR 'data' must hold integer pixel values 0-255, got dtype "
                        f"{data.dtype}")
    if data.dtype != np.uint8 and data.size and (data.min() < 0 or data.max() > 255):
        # astype(uint8) would wrap such values around silently
        raise DataError(f"{path}: CIFAR 'data' has pixel values outside 0-255 "
                        f"({data.min()}..{data.max()})")
    labels = np.asarray(labels)
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {labels.shape[0] if labels.ndim else 0} labels for "
                        f"{data.shape[0]} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: CIFAR labels must be integers")
    return data.reshape(-1, 3, 32, 32).astype(np.uint8), labels.astype(np.int64)


def is_cifar_dir(path: Path) -> bool:
    """True for a cifar-10-batches-py or cifar-100-python folder."""
    return path.is_dir() and ((path / "data_batch_1").is_file() or
                              ((path / "train").is_file() and (path / "meta").is_file()))


def read_cifar(path: Path) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[str]]:
    """({'train': (x, y), 'test': (x, y)}, class names) from a CIFAR folder."""
    if (path / "data_batch_1").is_file():
        meta = safe_unpickle(path / "batches.meta") if (path / "batches.meta").is_file() else {}
        names = _names(meta, "label_names")
        train = [_batch(p, "labels") for p in sorted(path.glob("data_batch_*"))]
        test = [_batch(path / "test_batch", "labels")] if (path / "test_batch").is_file() else []
    elif (path / "train").is_file():
        meta = safe_unpickle(path / "meta") if (path / "meta").is_file() else {}
        names = _names(meta, "fine_label_names")
        train = [_batch(path / "train", "fine_labels")]
        test = [_batch(path / "test", "fine_labels")] if (path / "test").is_file() else []
    else:
        raise DataError(f"{path}: not a CIFAR folder (expected data_batch_1 ... or train/meta)")
    out = {"train": (np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]))}
    if test:
        out["test"] = test[0]
    return out, names


def _read(path: Path, opts: LoadOptions, progress: Progress) -> ImageSet:
    parts, names = read_cifar(path)
    return read_arrays(parts, names or None, path, opts)


SOURCE = Source("cifar", _read, is_cifar_dir, priority=10)
