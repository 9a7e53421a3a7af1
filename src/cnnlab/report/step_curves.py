"""Learning curves against the optimization step (steps.csv), e.g. CS 475's train/dev accuracy
per step and USI 1.3.1's metrics every n steps."""

from __future__ import annotations

from pathlib import Path

from cnnlab import io
from cnnlab.report.plots import plot_train_val


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
    # in step order: CsvLogger appends, and drops the steps a resumed run logs again
    return plot_train_val(rows, "step", path, title, "optimization step",
                          train_label="train (running)", train_style="-")
