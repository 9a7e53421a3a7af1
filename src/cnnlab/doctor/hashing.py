"""Exact and near-duplicate images: byte digests and a vectorised perceptual hash (pHash).

The pHash follows the `imagehash` package (grayscale, 32x32, 2-D DCT, the 8x8 lowest
frequencies compared with their median) but runs on a whole uint8 [N,C,H,W] batch in torch, so
10,000 images hash in well under a second; bench/doctor.py compares it with imagehash.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch
import torch.nn.functional as F

HASH_SIDE = 32  # the image is reduced to 32x32 before the DCT, as imagehash does
LOW = 8  # 8x8 low frequencies -> a 64-bit hash
_BITS = (np.uint64(1) << np.arange(64, dtype=np.uint64)[::-1]).astype(np.uint64)


def gray(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N,C,H,W] -> float [N,1,H,W] luminance (Pillow's 'L' weights)."""
    x = images.float()
    if x.shape[1] >= 3:
        w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        return (x[:, :3] * w).sum(1, keepdim=True)
    return x[:, :1]


def _dct_matrix(n: int, rows: int) -> torch.Tensor:
    k = torch.arange(rows, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    return torch.cos(math.pi * k * (2 * i + 1) / (2 * n)).float()


def phash(images: torch.Tensor) -> np.ndarray:
    """64-bit perceptual hashes (uint64 [N]) of uint8 [N,C,H,W] images."""
    if images.shape[0] == 0:
        return np.zeros(0, dtype=np.uint64)
    return phash_small(shrink(gray(images), HASH_SIDE)[:, 0])


def shrink(x: torch.Tensor, side: int) -> torch.Tensor:
    """[N,C,H,W] (uint8 or float) resized to side x side with an antialiasing filter."""
    if tuple(x.shape[-2:]) == (side, side):
        return x
    return F.interpolate(x, size=(side, side), mode="bilinear", antialias=True,
                         align_corners=False)


def phash_small(small: torch.Tensor) -> np.ndarray:
    """pHashes of grayscale images already reduced to float [N,32,32]."""
    d = _dct_matrix(HASH_SIDE, LOW)
    low = (d @ small.float() @ d.T).reshape(-1, LOW * LOW)  # unnormalised DCT-II, like scipy's
    med = torch.quantile(low, 0.5, dim=1, keepdim=True)  # numpy's median (interpolated)
    return pack_bits((low > med).numpy())


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """bool [N,64] (most significant bit first) -> uint64 [N]."""
    return (bits.astype(np.uint64) * _BITS).sum(1, dtype=np.uint64)


def digests(images: torch.Tensor) -> list[bytes]:
    """A digest of each image's decoded bytes: equal digests = pixel-identical images."""
    arr = images.numpy()
    return [hashlib.blake2b(np.ascontiguousarray(a).tobytes(), digest_size=16).digest()
            for a in arr]


def close_pairs(hashes: np.ndarray, distance: int, usable: np.ndarray | None = None,
                chunk: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs i < j with Hamming distance <= `distance`: (i, j, distance) arrays.

    `usable` (bool [N]) leaves out images whose hash means nothing (nearly blank ones).
    """
    idx = np.arange(len(hashes)) if usable is None else np.flatnonzero(usable)
    h = hashes[idx]
    # Rows per block: the [rows, N] distance block stays near 16M entries (~150 MB).
    chunk = chunk or max(16, min(4096, 16_000_000 // max(len(h), 1)))
    out_i, out_j, out_d = [], [], []
    for s in range(0, len(h), chunk):
        block = h[s:s + chunk]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        a, b = np.nonzero(dist <= distance)
        keep = b > a + s  # each pair once, never an image with itself
        a, b = a[keep], b[keep]
        out_i.append(idx[a + s])
        out_j.append(idx[b])
        out_d.append(dist[a, b].astype(np.int64))
    if not out_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def components(n: int, pairs_i: np.ndarray, pairs_j: np.ndarray) -> list[list[int]]:
    """Connected groups (size >= 2) of the graph with these edges, largest first."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs_i.tolist(), pairs_j.tolist(), strict=True):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for x in sorted(set(pairs_i.tolist()) | set(pairs_j.tolist())):
        groups.setdefault(find(x), []).append(x)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))
