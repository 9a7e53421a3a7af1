"""Subsets of memory-mapped image sets that stay on disk (sets larger than RAM stay trainable)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

# Subsets of a memory-mapped set at least this big stay on disk (their own .npy in the cache
# folder) instead of being copied into RAM: that is what keeps sets larger than memory trainable.
SUBSET_ON_DISK_BYTES = int(float(os.environ.get("CNNLAB_MMAP_SUBSET_MB", 64)) * 2**20)
CHUNK_BYTES = 8 * 2**20


def rows_per_chunk(row_bytes: int) -> int:
    """How many images to move at once so a chunk stays near CHUNK_BYTES."""
    return max(1, CHUNK_BYTES // max(1, row_bytes))


def copy_rows(src: np.ndarray, index: np.ndarray, dst: np.ndarray) -> None:
    """dst[j] = src[index[j]], a bounded chunk at a time (never the whole set in RAM)."""
    step = rows_per_chunk(int(np.prod(src.shape[1:])) * src.itemsize)
    for start in range(0, len(index), step):
        dst[start:start + step] = src[index[start:start + step]]


def disk_subset(images: torch.Tensor, mmap_file: str, index: np.ndarray) -> tuple[torch.Tensor,
                                                                                  str] | None:
    """images[index] as a memory-mapped .npy beside `mmap_file` (written once, then reused)."""
    src_path = Path(mmap_file)
    # A contiguous view of the mapped file differs from it only by its offset: hash that too.
    h = hashlib.sha256(f"{src_path}\0{tuple(images.shape)}\0{images.storage_offset()}".encode())
    h.update(np.ascontiguousarray(index, dtype=np.int64).tobytes())
    target = src_path.parent / "subsets" / f"{h.hexdigest()[:32]}.npy"
    try:
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".npy",
                                       dir=target.parent)
            os.close(fd)
            try:
                out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                                shape=(len(index), *images.shape[1:]))
                copy_rows(images.numpy(), index, out)
                out.flush()
                del out
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        arr = np.load(target, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return torch.from_numpy(arr), str(target)
