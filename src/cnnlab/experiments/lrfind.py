"""Learning-rate range test: train briefly while the rate grows exponentially; watch the loss.

The model, optimizer, normalization and augmentation are built exactly as `train` builds them,
but nothing is written into any run: the model is thrown away afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import io
from cnnlab.console import console
from cnnlab.data.imageset import DataSplits
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import experiment_dir, prepare
from cnnlab.settings import TrainConfig
from cnnlab.train.lrrange import centered_mean, range_test, suggest
from cnnlab.train.trainer import Trainer


@dataclass
class LRFindResult:
    """The curve, the suggestions and where they were written."""

    folder: Path
    lrs: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    suggested: float | None
    steepest: float | None
    min_div10: float | None


def lr_find(base: TrainConfig, splits: DataSplits | None = None, out: str | Path | None = None,
            start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            diverge: float = 4.0, verbose: bool = True) -> LRFindResult:
    """Run the range test on the training split; write lr_find.csv/.json/.png into `out`."""
    if not (0 < start_lr <= end_lr):
        raise CnnlabError("lr-find: need 0 < --start-lr <= --end-lr")
    if steps < 5:
        raise CnnlabError("lr-find: --steps must be at least 5")
    cfg, splits = prepare(base, splits, verbose)
    folder = experiment_dir(out, cfg.runs_dir, "lr-find", splits, cfg)
    # The model, optimizer, sampler, class weights, clipping, precision and frozen layers are
    # exactly train's: the range test calls the same Trainer's batches and training step.
    trainer = Trainer(cfg, splits, None, verbose=False, callbacks=[])
    lrs, raw = range_test(trainer, start_lr, end_lr, steps, diverge)
    smooth = centered_mean(raw, max(3, (steps // 10) | 1))
    steepest, min_div10 = suggest(lrs, smooth)
    # The smaller of the two: too small a rate only trains slower, too large a one diverges.
    suggested = min((v for v in (steepest, min_div10) if v is not None), default=None)
    folder.mkdir(parents=True, exist_ok=True)
    points = zip(lrs, raw, smooth, strict=True)
    io.write_csv(folder / "lr_find.csv", [{"step": i, "lr": a, "loss": b, "smoothed": c}
                                          for i, (a, b, c) in enumerate(points, 1)])
    io.write_json(folder / "lr_find.json", {
        "data": cfg.data or "digits", "model": cfg.model, "optimizer": cfg.optimizer,
        "batch_size": cfg.batch_size, "start_lr": start_lr, "end_lr": end_lr,
        "steps_run": len(lrs), "suggested_lr": suggested, "steepest_lr": steepest,
        "min_loss_lr_div10": min_div10,
        "rule": "smoothed loss = centred moving average over steps/10 points; steepest = "
                "steepest fall before the minimum of its first valley; min/10 = lr of that "
                "minimum / 10; suggested = the smaller of the two"})
    _plot(folder / "lr_find.png", lrs, raw, smooth, suggested, steepest, min_div10, cfg, splits)
    if verbose:
        console.print(f"lr-find: {len(lrs)} steps from {start_lr:g} to {lrs[-1] if lrs else 0:g}"
                      f" ({cfg.optimizer}, batch {cfg.batch_size})")
        console.print(f"steepest descent: {_g(steepest)}   min-loss/10: {_g(min_div10)}")
        console.print(f"[bold]suggested --lr {_g(suggested)}[/]   plot: {folder / 'lr_find.png'}")
    return LRFindResult(folder, lrs, smooth, raw, suggested, steepest, min_div10)


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _plot(path: Path, lrs: list[float], raw: list[float], smooth: list[float],
          suggested: float | None, steepest: float | None, min_div10: float | None,
          cfg: TrainConfig,
          splits: DataSplits) -> None:
    from cnnlab.report.plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(lrs, raw, color="0.75", lw=0.8, label="loss per batch")
    ax.plot(lrs, smooth, lw=2, label="smoothed loss")
    for v, style, label in ((steepest, "r--", "steepest descent"),
                            (min_div10, "g:", "min-loss lr / 10")):
        if v is not None:
            ax.axvline(v, color=style[0], ls=style[1:], label=f"{label}: {v:.2g}")
    ax.set_xscale("log")
    if smooth:
        # Show the fall in full; the blow-up at the end only needs to be seen leaving the plot.
        lo = min(min(smooth), float(np.percentile(raw, 2)))
        hi = max(smooth[: max(1, len(smooth) // 3)])
        pad = 0.1 * abs(hi - lo) + 1e-3
        ax.set_ylim(lo - pad, hi + 2 * pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    if suggested is not None:
        ax.axvline(suggested, color="k", lw=2.5, alpha=0.35, label=f"suggested: {suggested:.2g}")
    ax.set_title(f"LR range test: {cfg.model}, {cfg.optimizer} on {splits.source or 'data'}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)
