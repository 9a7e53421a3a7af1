"""On-disk cache of decoded image sets, keyed by the source files and the resize policy."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.mapped import copy_rows  # noqa: F401  (used by the loader as cache.copy_rows)

CACHE_VERSION = 1
_heap_bounded = False


def bound_heap_retention() -> None:
    """glibc: give every allocation of 1 MB or more its own mapping, returned on free.

    glibc raises its mmap threshold after the first big free, so batch-sized buffers then come
    from the heap; measured here, one run in three then kept a whole epoch of freed float
    batches (~1.5 GB for a 400 MB set) instead of reusing them. A fixed threshold prevents that.
    """
    global _heap_bounded
    if _heap_bounded or not sys.platform.startswith("linux"):
        return
    _heap_bounded = True
    try:
        ctypes.CDLL(None).mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError, TypeError):
        pass  # not glibc (e.g. musl): nothing to tune


def cache_root() -> Path:
    """$CNNLAB_CACHE, else ~/.cache/cnnlab."""
    env = os.environ.get("CNNLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "cnnlab"


def cache_key(files: list[Path], settings: dict) -> str:
    """Hash of every file's path, size and mtime plus the decode settings."""
    h = hashlib.sha256(json.dumps({"v": CACHE_VERSION, **settings}, sort_keys=True).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
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
    extra = {**meta.get("meta", {}), "mmap_file": str(folder / "images.npy")}
    bound_heap_retention()
    return ImageSet(torch.from_numpy(images), torch.tensor(meta["labels"], dtype=torch.int64),
                    meta["classes"], meta["ids"], part, extra)


class CacheWriter:
    """A cache entry written in place: decode straight into `images` (a disk-backed array)."""

    def __init__(self, key: str, shape: tuple[int, ...]) -> None:
        self.key, self.folder = key, cache_root() / key
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.folder.parent))
        self.images = np.lib.format.open_memmap(self.tmp / "images.npy", mode="w+",
                                                dtype=np.uint8, shape=shape)

    def commit(self, labels: list[int], classes: list[str], ids: list[str],
               partition: list[str] | None, meta: dict) -> ImageSet | None:
        """Finish the entry atomically and return it memory-mapped (None if that failed)."""
        try:
            self.images.flush()
            del self.images
            doc = {"labels": [int(v) for v in labels], "classes": classes, "ids": ids,
                   "partition": list(partition or []), "meta": meta}
            (self.tmp / "meta.json").write_text(json.dumps(doc))
            if self.folder.exists():  # another process finished the same entry first
                shutil.rmtree(self.tmp, ignore_errors=True)
            else:
                os.replace(self.tmp, self.folder)
        except OSError:
            self.abort()
            return None
        return load_cached(self.key)

    def abort(self) -> None:
        """Drop the unfinished entry."""
        self.__dict__.pop("images", None)
        shutil.rmtree(self.tmp, ignore_errors=True)


def create_cached(key: str, shape: tuple[int, ...]) -> CacheWriter | None:
    """A writer for a new entry of uint8 images of `shape`, or None when the cache is unusable."""
    try:
        return CacheWriter(key, shape)
    except OSError:
        return None


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
