"""On-disk cache of decoded image sets, keyed by the source files and the resize policy."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
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


# Room left free on the cache's disk beyond an entry itself (other programs need some too).
FREE_MARGIN_BYTES = 64 * 2**20
STALE_TEMP_SECONDS = 3600
_cleaned: set[Path] = set()


def free_bytes(folder: Path) -> int | None:
    """Bytes an unprivileged writer may still use on the filesystem of `folder` (None: unknown)."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def available_memory() -> int | None:
    """Bytes of RAM available to new allocations without swapping (None: unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024, one decimal)."""
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class CacheSpaceError(OSError):
    """The cache's disk lacks room for an entry (raised before anything is written)."""

    def __init__(self, need: int, free: int, folder: Path) -> None:
        super().__init__(f"the decode cache {folder} has {human_bytes(free)} free, "
                         f"{human_bytes(need)} needed")
        self.need, self.free, self.folder = need, free, folder


def _owner_dead(name: str) -> bool:
    # Temp names are .KEY.PID.RANDOM: a live owner may still be writing its entry.
    parts = name.split(".")
    if len(parts) < 4 or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass  # exists, owned by someone else
    return False


def clean_stale_temps(root: Path | None = None) -> int:
    """Remove unfinished entries (.KEY.PID.xxxx folders) that killed processes left behind."""
    root = root or cache_root()
    removed = 0
    try:
        entries = [p for p in root.iterdir() if p.name.startswith(".") and p.is_dir()
                   and not p.is_symlink()]
    except OSError:
        return 0
    now = time.time()
    for p in entries:
        try:
            newest = max([p.stat().st_mtime] + [f.stat().st_mtime for f in p.iterdir()])
        except OSError:
            continue
        if _owner_dead(p.name) or now - newest > STALE_TEMP_SECONDS:
            shutil.rmtree(p, ignore_errors=True)
            removed += 1
    for f in root.glob("*/subsets/.*.npy"):  # unfinished subset files (no owner recorded)
        try:
            if now - f.stat().st_mtime > STALE_TEMP_SECONDS:
                f.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def _clean_once() -> None:
    root = cache_root()
    if root not in _cleaned:
        _cleaned.add(root)
        clean_stale_temps(root)


def _reserve(path: Path, size: int) -> None:
    """Allocate the file's blocks now: a full disk is then an error here, not a SIGBUS later."""
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    except AttributeError:
        pass  # no posix_fallocate on this platform: the free-space check has to do
    finally:
        os.close(fd)


def check_free(folder: Path, need: int) -> None:
    """Raise CacheSpaceError when `folder`'s disk cannot hold `need` more bytes (plus margin)."""
    free = free_bytes(folder)
    if free is not None and free < need + FREE_MARGIN_BYTES:
        raise CacheSpaceError(need, free, folder)


def _new_memmap(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A writable uint8 .npy memmap whose disk blocks are all allocated up front."""
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    _reserve(path, path.stat().st_size)
    return arr


class CacheMiss(Exception):
    """A cache-only read found no entry (LoadOptions.cache_only): the caller decodes instead."""


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
        _clean_once()
        check_free(self.folder.parent, int(np.prod(shape)) + 4096)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.",
                                         dir=self.folder.parent))
        try:
            self.images = _new_memmap(self.tmp / "images.npy", shape)
        except BaseException:
            self.abort()
            raise

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
    """A writer for a new entry of uint8 images of `shape`, or None when the cache is unusable.

    Lack of space raises CacheSpaceError (the caller decides: decode in memory, or refuse).
    """
    try:
        return CacheWriter(key, shape)
    except CacheSpaceError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise CacheSpaceError(int(np.prod(shape)), free_bytes(cache_root()) or 0,
                                  cache_root()) from None
        return None


def save_cached(key: str, data: ImageSet) -> None:
    """Write the ImageSet to the cache atomically; failures are silent (the cache is optional)."""
    folder = cache_root() / key
    tmp = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        check_free(folder.parent, data.images.numel() + 4096)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.{os.getpid()}.", dir=folder.parent))
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
        if tmp is not None:  # never leave a half-written entry filling the disk
            shutil.rmtree(tmp, ignore_errors=True)
        return
