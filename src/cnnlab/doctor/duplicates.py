"""Duplicate groups within and across splits, and leaks: val/test items that are also in train.

Two images are duplicates when their decoded pixels are identical (exact), or when their
pHashes differ in at most `distance` bits AND their 32x32 grayscale thumbnails correlate at
least `min_similarity`. The second test matters on small images: distinct MNIST "1"s share a
pHash, yet no two distinct MNIST digits correlate above 0.99 while re-encoded, brightened or
noisy copies stay above 0.995.
"""

from __future__ import annotations

import numpy as np

from cnnlab.doctor.features import BLANK_STD, Scan
from cnnlab.doctor.hashing import close_pairs, components
from cnnlab.doctor.pool import Pool

DEFAULT_DISTANCE = 6
DEFAULT_SIMILARITY = 0.99


def duplicate_pairs(scan: Scan, distance: int = DEFAULT_DISTANCE,
                    min_similarity: float = DEFAULT_SIMILARITY) -> tuple[np.ndarray, ...]:
    """(i, j, exact) for duplicate pairs i < j.

    Pixel-identical copies are linked to the first copy only (a thousand black frames make a
    thousand edges, not half a million); the pool lists train first, so every held-out copy of
    a training image is linked to a training copy and shows up as a leak.
    """
    first: dict[bytes, int] = {}
    exact_pairs = []
    for k, d in enumerate(scan.digests):
        if d in first:
            exact_pairs.append((first[d], k))
        else:
            first[d] = k
    # Nearly constant images have meaningless hashes: only exact copies of them count.
    usable = scan.std >= BLANK_STD
    ni, nj, _ = close_pairs(scan.hashes, distance, usable)
    if len(ni):
        sim = np.einsum("ij,ij->i", scan.thumbs[ni], scan.thumbs[nj])
        ok = sim >= min_similarity
        ni, nj = ni[ok], nj[ok]
    near = [(a, b) for a, b in zip(ni.tolist(), nj.tolist(), strict=True)
            if scan.digests[a] != scan.digests[b]]
    pairs = sorted(exact_pairs) + sorted(near)
    i, j = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    return i, j, np.arange(len(pairs)) < len(exact_pairs)


def find_duplicates(pool: Pool, scan: Scan, distance: int = DEFAULT_DISTANCE,
                    min_similarity: float = DEFAULT_SIMILARITY) -> tuple[list[dict], list[dict]]:
    """(duplicate groups, leaks) as doctor.json records."""
    i, j, exact = duplicate_pairs(scan, distance, min_similarity)
    exact_of = {(int(a), int(b)): bool(e) for a, b, e in zip(i, j, exact, strict=True)}
    groups = []
    for members in components(len(pool), i, j):
        digs = {scan.digests[m] for m in members}
        splits = sorted({str(pool.split_names[m]) for m in members})
        labels = {int(pool.labels[m]) for m in members}
        groups.append({"kind": "exact" if len(digs) == 1 else "near", "size": len(members),
                       "splits": splits, "cross_split": len(splits) > 1,
                       "labels_disagree": len(labels) > 1, "members": members,
                       "items": [pool.describe(m) for m in members]})
    leaks: dict[int, dict] = {}
    for a, b in zip(i.tolist(), j.tolist(), strict=True):
        sa, sb = str(pool.split_names[a]), str(pool.split_names[b])
        if (sa == "train") == (sb == "train"):
            continue  # a leak joins train with val or test
        held, tr = (b, a) if sa == "train" else (a, b)
        rec = leaks.setdefault(held, {"item": held, "split": str(pool.split_names[held]),
                                      "train_matches": [], "exact": False})
        rec["train_matches"].append(tr)
        rec["exact"] = rec["exact"] or exact_of[(min(a, b), max(a, b))]
    out = []
    for held in sorted(leaks, key=lambda h: (pool.split_names[h] != "test", h)):
        rec = leaks[held]
        matches = sorted(set(rec["train_matches"]))
        same = all(pool.labels[m] == pool.labels[held] for m in matches)
        out.append({**pool.describe(held), "index": held, "exact": rec["exact"],
                    "train_matches": [pool.describe(m) for m in matches],
                    "train_indices": matches, "labels_agree": bool(same)})
    return groups, out
