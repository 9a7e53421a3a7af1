"""Seeded, stratified splits."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    """Split indices into (keep, held_out) with `fraction` held out, stratified when possible."""
    idx = np.arange(len(labels))
    n_out = int(round(len(labels) * fraction))
    if fraction <= 0 or n_out == 0:
        return idx, idx[:0]
    if n_out >= len(labels):
        raise ValueError("split fraction leaves no training data")
    counts = np.bincount(labels[labels >= 0]) if (labels >= 0).any() else np.array([])
    k = int((counts > 0).sum())
    can_stratify = len(counts) and counts[counts > 0].min() >= 2 and n_out >= k and \
        len(labels) - n_out >= k
    keep, out = train_test_split(idx, test_size=n_out, random_state=seed,
                                 stratify=labels if can_stratify else None)
    return np.sort(keep), np.sort(out)
