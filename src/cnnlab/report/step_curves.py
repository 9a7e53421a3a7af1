"""Learning curves against the optimization step (steps.csv), e.g. CS 475's train/dev accuracy
per step and USI 1.3.1's metrics every n steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab import io
from cnnlab.report.plots import plt, save_figure


def plot_step_curves(steps_csv: Path, path: Path, title: str = "Learning curves by step"
                     ) -> Path | None:
    """Loss and accuracy against the step, train and val (rows that have val columns);
    None when steps.csv is missing or has no validation column."""
    steps_csv = Path(steps_csv)
    if not steps_csv.is_file():
        return None
    rows = io.read_csv(steps_csv)
    if not rows or "val_acc" not in rows[0]:
        return None
    # A resumed run appends steps it had already logged: the latest row of a step wins.
    by_step = {int(r["step"]): r for r in rows}
    rows = [by_step[k] for k in sorted(by_step)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        for split, style in (("train", "-"), ("val", "-s")):
            pts = [(r["step"], r.get(f"{split}_{key}")) for r in rows]
            pts = [(x, y) for x, y in pts if y is not None]
            if pts:
                xs, ys = np.array(pts, dtype=float).T
                ax.plot(xs, ys, style, ms=3, label=split + (" (running)" if split == "train"
                                                            else ""))
        ax.set_xlabel("optimization step")
        ax.set_ylabel(label.lower())
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)
