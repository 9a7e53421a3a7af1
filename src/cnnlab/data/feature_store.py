"""Backbone features on disk, keyed by the image files and the network that computed them.

A frozen backbone's pooled features of an image never change while the files, the decode
(side, resize, crop), the input normalization, the backbone's weights and the precision stay
the same. `train` (--freeze all, its feature cache) writes them here and reads them back on
the next run; `doctor --features backbone` reads what `train` wrote (and the other way round),
so the second of the two costs no backbone pass. One .npy per split under
$CNNLAB_CACHE/features/; the key hashes every file's path, size and mtime (as the decode
cache does) plus `what` (see feature_key), so a changed file or setting is a miss, never a
stale hit.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import cache
from cnnlab.data.sources.registry import files_root  # noqa: F401 - where train/ looks for it

STORE_VERSION = 1


def files_of(ids: list[str], root: Path | None) -> list[Path] | None:
    """The image file of every id under `root`, or None unless every one is a file."""
    if root is None or not ids:
        return None
    out = [p if p.is_absolute() else root / p for p in map(Path, ids)]
    return out if all(f.is_file() for f in out) else None


def weights_digest(net: torch.nn.Module, skip: torch.nn.Module | None = None) -> str:
    """sha256 of every parameter and buffer of `net` but those of `skip` (the head)."""
    skipped = {id(t) for t in (list(skip.parameters()) + list(skip.buffers()))} if skip else set()
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict(keep_vars=True).items()):
        if id(t) in skipped:
            continue
        a = t.detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(a.dtype).encode())
        h.update(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def feature_key(files: list[Path], net_digest: str, side: int, resize: str, crop: int | None,
                mean: list[float], std: list[float], precision: str) -> str:
    """The store key of the features of `files` (in this order)."""
    what = {"kind": "backbone-features", "store": STORE_VERSION, "net": net_digest,
            "side": int(side), "resize": resize, "crop": crop,
            "mean": [round(float(v), 6) for v in mean], "std": [round(float(v), 6) for v in std],
            "precision": precision}
    return cache.cache_key(files, what)


def _path(key: str) -> Path:
    return cache.cache_root() / "features" / f"{key}.npy"


def load_features(key: str, n: int) -> torch.Tensor | None:
    """The stored float32 [n, D] features of `key`, or None."""
    try:
        arr = np.load(_path(key), allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[0] != n or arr.dtype != np.float32:
        return None
    return torch.from_numpy(arr)


def save_features(key: str, feats: torch.Tensor) -> None:
    """Store features atomically; failures are silent (the store is an optimisation)."""
    path = _path(key)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".npy", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, feats.detach().float().cpu().numpy())
        os.replace(tmp, path)
    except OSError:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
