"""Oddities: unusual file sizes, aspect ratios and modes, blank images, far-from-class items."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable

import numpy as np

from cnnlab.data.decode import image_info
from cnnlab.doctor.features import BLANK_STD, Scan
from cnnlab.doctor.pool import Pool
from cnnlab.errors import DataError

SIZE_FACTOR = 4.0  # an image with 4x fewer/more pixels than the median is unusual
ASPECT_FACTOR = 2.0  # width/height 2x off the median aspect ratio is unusual
RARE_MODE = 0.05  # a Pillow mode shared by under 5% of the files is unusual
FAR_FACTOR = 2.2  # neighbours 2.2x farther than typical (clean digit sets top out at 1.9)


def file_oddities(pool: Pool, tick: Callable[[int], None] | None = None) -> tuple[list[dict],
                                                                                  dict]:
    """Files whose header size, aspect ratio or mode is unusual for the data set."""
    info: dict[int, tuple[int, int, str]] = {}
    for i, p in enumerate(pool.paths):
        if p is not None:
            with contextlib.suppress(DataError):  # an unreadable header: not judged
                info[i] = image_info(p)
        if tick is not None:
            tick(1)
    if not info:
        return [], {"files": 0}
    w = np.array([v[0] for v in info.values()], dtype=float)
    h = np.array([v[1] for v in info.values()], dtype=float)
    area, aspect = np.median(w * h), np.median(w / np.maximum(h, 1))
    modes = Counter(v[2] for v in info.values())
    out = []
    for i, (wi, hi, mode) in info.items():
        why = []
        a = wi * hi
        if a > area * SIZE_FACTOR or a * SIZE_FACTOR < area:
            why.append(f"size {wi}x{hi} (typical {int(np.median(w))}x{int(np.median(h))})")
        r = wi / max(hi, 1)
        if r > aspect * ASPECT_FACTOR or r * ASPECT_FACTOR < aspect:
            why.append(f"aspect ratio {r:.2f} (typical {aspect:.2f})")
        if modes[mode] < RARE_MODE * len(info):
            why.append(f"mode {mode} (most are {modes.most_common(1)[0][0]})")
        if why:
            out.append({**pool.describe(i), "index": i, "kind": "file", "why": "; ".join(why),
                        "width": wi, "height": hi, "mode": mode})
    summary = {"files": len(info), "median_size": [int(np.median(w)), int(np.median(h))],
               "modes": dict(modes.most_common())}
    return out, summary


def blank_images(pool: Pool, scan: Scan) -> list[dict]:
    """Nearly constant images (pixel standard deviation under BLANK_STD of 255)."""
    return [{**pool.describe(i), "index": int(i), "kind": "blank",
             "why": f"nearly constant (pixel std {scan.std[i]:.2f}, mean {scan.mean[i]:.0f})"}
            for i in np.flatnonzero(scan.std < BLANK_STD)]


def far_from_classes(pool: Pool, features: np.ndarray, skip: np.ndarray,
                     limit: int = 50, k: int = 10) -> list[dict]:
    """Items whose k-th nearest labeled neighbour is unusually far away: close to no class.

    The distance is divided by its median over the data set, so the score reads "N times the
    typical neighbour distance" whatever the feature space.
    """
    from sklearn.neighbors import NearestNeighbors

    ref = np.flatnonzero((pool.labels >= 0) & ~skip)
    if len(ref) <= k + 1:
        return []
    nn = NearestNeighbors(n_neighbors=k + 1).fit(features[ref])
    dist, nbr = nn.kneighbors(features)
    # An item of the reference set finds itself first: use its (k+1)-th neighbour instead.
    is_ref = np.zeros(len(pool), dtype=bool)
    is_ref[ref] = True
    kth = np.where(is_ref, dist[:, k], dist[:, k - 1])
    score = kth / (np.median(kth[~skip]) + 1e-9)
    score[skip] = 0.0  # blank images are reported as blank already
    out = []
    for i in np.argsort(-score)[:limit]:
        if score[i] < FAR_FACTOR:
            break
        labs = pool.labels[ref[nbr[i, :k]]]
        near = pool.classes[int(np.bincount(labs).argmax())]
        out.append({**pool.describe(int(i)), "index": int(i), "kind": "far",
                    "score": float(score[i]),
                    "why": f"{score[i]:.1f}x the typical distance to its nearest neighbours "
                           f"(nearest class: {near})"})
    return out
