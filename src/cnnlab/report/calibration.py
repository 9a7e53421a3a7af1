"""The reliability diagram: accuracy against confidence per bin, before and after calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.report.plots import plt, save_figure


def reliability_figure(after: dict, path: Path, title: str, before: dict | None = None,
                       ece_after: float | None = None, ece_before: float | None = None) -> Path:
    """Bars of accuracy per confidence bin against the diagonal (perfect calibration), with the
    share of images per bin below; `before` (uncalibrated bins) drawn as an outline."""
    edges = np.asarray(after["edges"])
    width = edges[1] - edges[0]
    mid = edges[:-1] + width / 2
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True,
                                   gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "--", color="0.5", lw=1, label="perfectly calibrated")

    def acc(r: dict) -> np.ndarray:
        return np.nan_to_num(np.asarray(r["accuracy"], dtype=float), nan=0.0)

    if before is not None:
        label = "before" + (f" (ECE {ece_before:.3f})" if ece_before is not None else "")
        ax.bar(mid, acc(before), width, fill=False, edgecolor="tab:red", lw=1.2, label=label)
    label = ("after" if before is not None else "model") + \
        (f" (ECE {ece_after:.3f})" if ece_after is not None else "")
    ax.bar(mid, acc(after), width * 0.8, color="tab:blue", alpha=0.75, label=label)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    n = max(1, sum(after["count"]))
    if before is not None:
        hist.bar(mid, np.asarray(before["count"]) / n, width, fill=False, edgecolor="tab:red")
    hist.bar(mid, np.asarray(after["count"]) / n, width * 0.8, color="tab:blue", alpha=0.75)
    hist.set_xlabel("confidence (highest class probability)")
    hist.set_ylabel("share")
    hist.grid(alpha=0.3)
    return save_figure(fig, path)
