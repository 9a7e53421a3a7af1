"""On-disk cache of decoded image sets, keyed by the source files and the resize policy."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.imageset import ImageSet

CACHE_VERSION = 1


def cache_root() -> Path:
    """$CNNLAB_CACHE, else ~/.cache/cnnlab."""
    env = os.environ.get("CNNLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cnnlab"


def cache_key(files: list[Path], settings: dict) -> str:
    """Hash of every file's path, size and mtime plus the decode settings."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def load_cached(key: str) -> ImageSet | None:
    """The cached ImageSet for `key`, memory-mapped, or None."""
    folder = cache_root() / key
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError):
        return None
    part = np.asarray(meta["partition"], dtype=str) if meta["partition"] else None
    return ImageSet(torch.from_numpy(images), torch.tensor(meta["labels"], dtype=torch.int64),
                    meta["classes"], meta["ids"], part, meta.get("meta", {}))


def save_cached(key: str, data: ImageSet) -> None:
    """Write the ImageSet to the cache atomically; failures are silent (the cache is optional)."""
    folder = cache_root() / key
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=folder.parent))
        np.save(tmp / "images.npy", data.images.numpy())
        meta = {"labels": data.labels.tolist(), "classes": data.classes, "ids": data.ids,
                "partition": [] if data.partition is None else data.partition.tolist(),
                "meta": data.meta}
        (tmp / "meta.json").write_text(json.dumps(meta))
        if folder.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except OSError:
        return
