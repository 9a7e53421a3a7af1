"""Learning-rate range test: train briefly while the rate grows exponentially; watch the loss.

The model, optimizer, normalization and augmentation are built exactly as `train` builds them,
but nothing is written into any run: the model is thrown away afterwards.
"""

from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab import io
from cnnlab.console import console
from cnnlab.data.imageset import DataSplits
from cnnlab.errors import CnnlabError, TrainingError
from cnnlab.experiments.common import experiment_dir
from cnnlab.run import load_splits, resolve_data
from cnnlab.settings import TrainConfig
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


def centered_mean(values: list[float], window: int) -> list[float]:
    """Moving average centred on each point (shorter at the ends): smooth without lag.

    A running (exponential) mean lags the loss by many steps, i.e. by up to a decade of
    learning rate, which would push the suggestion towards too large rates.
    """
    v = np.asarray(values, dtype=np.float64)
    half = window // 2
    c = np.concatenate([[0.0], np.cumsum(v)])
    lo = np.clip(np.arange(len(v)) - half, 0, len(v))
    hi = np.clip(np.arange(len(v)) + half + 1, 0, len(v))
    return ((c[hi] - c[lo]) / np.maximum(hi - lo, 1)).tolist()


def suggest(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None]:
    """(steepest descent, lr of the minimum / 10) within the first valley of a smoothed loss.

    The first valley ends where the loss climbs back a quarter of the way to where it started:
    a spike after a good stretch (or the final blow-up) does not move the answer past it.
    """
    if len(lrs) < 5 or lrs[0] == lrs[-1]:  # a fixed rate has no curve to read
        return None, None
    x = np.log10(np.asarray(lrs))
    y = np.asarray(losses)
    end, low = len(y), y[0]
    for i, v in enumerate(y):
        low = min(low, v)
        drop = y[0] - low  # only a real fall (5% of the start) opens a valley
        if drop > 0.05 * abs(y[0]) and v > low + 0.25 * drop:
            end = i
            break
    i_min = int(np.argmin(y[:end]))
    min_div10 = float(lrs[i_min] / 10)
    lo = max(1, len(y) // 10)  # the first tenth is noise around the starting loss
    if i_min - lo < 2:
        return None, min_div10
    grad = np.gradient(y[: i_min + 1], x[: i_min + 1])
    i = lo + int(np.argmin(grad[lo:]))
    return float(lrs[i]), min_div10


def lr_find(base: TrainConfig, splits: DataSplits | None = None, out: str | Path | None = None,
            start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            diverge: float = 4.0, verbose: bool = True) -> LRFindResult:
    """Run the range test on the training split; write lr_find.csv/.json/.png into `out`."""
    if not (0 < start_lr <= end_lr):
        raise CnnlabError("lr-find: need 0 < --start-lr <= --end-lr")
    if steps < 5:
        raise CnnlabError("lr-find: --steps must be at least 5")
    cfg = deepcopy(base)
    resolve_data(cfg)
    if splits is None:
        splits = load_splits(cfg, verbose)
    folder = experiment_dir(out, cfg.runs_dir, "lr-find", splits, cfg)
    # The model, optimizer, sampler, class weights, clipping, precision and frozen layers are
    # exactly train's: the range test calls the same Trainer's batches and training step.
    trainer = Trainer(cfg, splits, None, verbose=False, callbacks=[])
    base_lr = cfg.resolved_lr()
    mults = [g["lr"] / base_lr if base_lr else 1.0 for g in trainer.optimizer.param_groups]
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs: list[float] = []
    raw: list[float] = []
    avg, best, beta = 0.0, math.inf, 0.9
    step, epoch = 0, 0
    trainer.model.train()
    if trainer.frozen is not None:  # frozen layers keep their BatchNorm statistics, as in train
        trainer.frozen.after_train()
    while step < steps:
        done = False
        for x, y, idx in trainer.batches(epoch):
            lr = start_lr * ratio ** step
            for g, mult in zip(trainer.optimizer.param_groups, mults, strict=True):
                g["lr"] = lr * mult
            try:
                loss, _ = trainer.train_step(x, y, idx)
            except TrainingError:  # the loss became NaN/inf: the test has gone far enough
                done = True
                break
            value = float(loss)
            step += 1
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta ** step)  # bias-corrected running mean: stop test only
            lrs.append(lr)
            raw.append(value)
            best = min(best, smoothed)
            if step >= steps or (smoothed > diverge * best and step > 5):
                done = True
                break
        if done:
            break
        epoch += 1
    smooth = centered_mean(raw, max(3, (steps // 10) | 1))
    steepest, min_div10 = suggest(lrs, smooth)
    # The smaller of the two: too small a rate only trains slower, too large a one diverges.
    suggested = min((v for v in (steepest, min_div10) if v is not None), default=None)
    folder.mkdir(parents=True, exist_ok=True)
    io.write_csv(folder / "lr_find.csv", [{"step": i + 1, "lr": a, "loss": b, "smoothed": c}
                                               for i, (a, b, c) in enumerate(zip(lrs, raw,
                                                                                 smooth,
                                                                                 strict=True))])
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
