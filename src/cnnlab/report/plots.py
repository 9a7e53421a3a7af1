"""Matplotlib figures of a run: learning curves and confusion matrix."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cnnlab.io import atomic_path  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, tight: bool = True, dpi: int = 110) -> Path:
    """Save as PNG (atomically) and close; tight=False skips the extra layout pass."""
    try:
        with atomic_path(path, suffix=".tmp") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format="png")
    finally:
        plt.close(fig)
    return path


def plot_train_val(rows: list[dict], x: str, path: Path, title: str, xlabel: str,
                   train_label: str = "train", train_style: str = "-o") -> Path:
    """Loss and accuracy of train and val against column `x` (epoch or step); rows without a
    value for a split are skipped, so val measured every N steps draws one line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        for split, style, name in (("train", train_style, train_label), ("val", "-s", "val")):
            pts = [(r[x], r[f"{split}_{key}"]) for r in rows
                   if r.get(f"{split}_{key}") is not None]
            if pts:
                xs, ys = np.array(pts, dtype=float).T
                ax.plot(xs, ys, style, ms=3, label=name)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole
        ax.set_ylabel(label.lower())
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_curves(history: list[dict], path: Path, title: str = "Learning curves") -> Path:
    """Loss and accuracy per epoch, train and val."""
    return plot_train_val(history, "epoch", path, title, "epoch")


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path,
                   title: str = "Confusion matrix") -> Path:
    """Counts with row-normalised colour, true classes on rows."""
    m = np.asarray(cm, dtype=float)
    k = len(classes)
    size = min(14, max(4, 0.45 * k + 2.5))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return save_figure(fig, path)
