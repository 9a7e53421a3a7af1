"""Oddities: unusual file sizes, aspect ratios and modes, blank images, far-from-class items."""

from __future__ import annotations

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
FAR_FACTOR = 5.0  # farther than 5x the typical radius of its nearest class: far from all


def file_oddities(pool: Pool, tick: Callable[[int], None] | None = None) -> tuple[list[dict],
                                                                                  dict]:
    """Files whose header size, aspect ratio or mode is unusual for the data set."""
    info: dict[int, tuple[int, int, str]] = {}
    for i, p in enumerate(pool.paths):
        if p is not None:
            try:
                info[i] = image_info(p)
            except DataError:
                pass
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
                     limit: int = 50) -> list[dict]:
    """Labeled-or-not items far from every class centre, relative to each class's spread."""
    lab = pool.labels
    train = (lab >= 0) & ~skip
    classes = np.unique(lab[train])
    if len(classes) < 2:
        return []
    dist = np.full((len(pool), len(classes)), np.inf)
    for k, c in enumerate(classes):
        members = features[train & (lab == c)]
        centre = members.mean(0)
        radius = np.median(np.linalg.norm(members - centre, axis=1)) + 1e-6
        dist[:, k] = np.linalg.norm(features - centre, axis=1) / radius
    score = dist.min(1)
    score[skip] = 0.0  # blank images are reported as blank already
    order = np.argsort(-score)
    out = []
    for i in order[:limit]:
        if score[i] < FAR_FACTOR:
            break
        near = pool.classes[int(classes[dist[i].argmin()])]
        out.append({**pool.describe(int(i)), "index": int(i), "kind": "far",
                    "score": float(score[i]),
                    "why": f"{score[i]:.1f}x the typical distance from its nearest class "
                           f"({near})"})
    return out
