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
import torch
import torch.nn.functional as F

from cnnlab.config import TrainConfig
from cnnlab.console import console
from cnnlab.data.augment import build_augment
from cnnlab.data.batches import batch_slices, epoch_order, to_float
from cnnlab.data.imageset import DataSplits
from cnnlab.device import autocast, resolve_device, set_threads
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import experiment_dir, load_splits, resolve_data
from cnnlab.train import rundir
from cnnlab.train.setup import build_classifier, make_optimizer, param_groups


@dataclass
class LRFindResult:
    """The curve, the two suggestions and where they were written."""

    folder: Path
    lrs: list[float]
    losses: list[float]  # smoothed
    raw_losses: list[float]
    suggested: float | None
    steepest: float | None
    min_div10: float | None


def suggest(lrs: list[float], losses: list[float]) -> tuple[float | None, float | None]:
    """(steepest descent, lr of the minimum / 10) of a smoothed loss curve."""
    if len(lrs) < 5:
        return None, None
    x = np.log10(np.asarray(lrs))
    y = np.asarray(losses)
    i_min = int(np.argmin(y))
    min_div10 = float(lrs[i_min] / 10)
    # The steepest fall before the minimum, ignoring the noisy first tenth of the curve.
    lo = max(1, len(y) // 10)
    if i_min - lo < 2:
        return None, min_div10
    grad = np.gradient(y[: i_min + 1], x[: i_min + 1])
    i = lo + int(np.argmin(grad[lo:]))
    return float(lrs[i]), min_div10


def lr_find(base: TrainConfig, splits: DataSplits | None = None, out: str | Path | None = None,
            start_lr: float = 1e-7, end_lr: float = 10.0, steps: int = 100,
            diverge: float = 4.0, verbose: bool = True) -> LRFindResult:
    """Run the range test on the training split; write lr_find.csv/.json/.png into `out`."""
    if not (0 < start_lr < end_lr):
        raise CnnlabError("lr-find: need 0 < --start-lr < --end-lr")
    if steps < 5:
        raise CnnlabError("lr-find: --steps must be at least 5")
    cfg = deepcopy(base)
    resolve_data(cfg)
    if splits is None:
        splits = load_splits(cfg, verbose)
    folder = experiment_dir(out, cfg.runs_dir, "lr-find", splits, cfg)
    set_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    train = splits.train
    model = build_classifier(cfg, train).model.to(device)
    optimizer = make_optimizer(param_groups(model, cfg), cfg)
    base_lr = cfg.resolved_lr()
    mults = [g["lr"] / base_lr if base_lr else 1.0 for g in optimizer.param_groups]
    augment = build_augment(cfg.augment)
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, raw, smooth = [], [], []
    avg, best, beta = 0.0, math.inf, 0.98
    slices = batch_slices(len(train), cfg.batch_size)
    model.train()
    step, epoch = 0, 0
    while step < steps:
        order = epoch_order(len(train), cfg.seed, epoch)
        for sl in slices:
            if step >= steps:
                break
            lr = start_lr * ratio ** step
            for g, mult in zip(optimizer.param_groups, mults, strict=True):
                g["lr"] = lr * mult
            idx = order[sl]
            x = to_float(train.images[idx], device)
            y = train.labels[idx].to(device)
            if augment is not None:
                x = augment(x)
            with autocast(device, cfg.precision):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            step += 1
            if not math.isfinite(value):
                break
            avg = beta * avg + (1 - beta) * value
            smoothed = avg / (1 - beta ** step)  # bias-corrected running mean
            lrs.append(lr)
            raw.append(value)
            smooth.append(smoothed)
            best = min(best, smoothed)
            if smoothed > diverge * best and step > 5:
                break
        else:
            epoch += 1
            continue
        break
    steepest, min_div10 = suggest(lrs, smooth)
    suggested = steepest if steepest is not None else min_div10
    folder.mkdir(parents=True, exist_ok=True)
    rundir.write_csv(folder / "lr_find.csv", [{"step": i + 1, "lr": a, "loss": b, "smoothed": c}
                                               for i, (a, b, c) in enumerate(zip(lrs, raw,
                                                                                 smooth,
                                                                                 strict=True))])
    rundir.write_json(folder / "lr_find.json", {
        "data": cfg.data or "digits", "model": cfg.model, "optimizer": cfg.optimizer,
        "batch_size": cfg.batch_size, "start_lr": start_lr, "end_lr": end_lr,
        "steps_run": len(lrs), "suggested_lr": suggested, "steepest_lr": steepest,
        "min_loss_lr_div10": min_div10,
        "rule": "suggested = lr of the steepest fall of the smoothed loss before its minimum "
                "(min-loss lr / 10 when the curve has no clear fall)"})
    _plot(folder / "lr_find.png", lrs, raw, smooth, steepest, min_div10, cfg, splits)
    if verbose:
        console.print(f"lr-find: {len(lrs)} steps from {start_lr:g} to {lrs[-1] if lrs else 0:g}"
                      f" ({cfg.optimizer}, batch {cfg.batch_size})")
        console.print(f"steepest descent: {_g(steepest)}   min-loss/10: {_g(min_div10)}")
        console.print(f"[bold]suggested --lr {_g(suggested)}[/]   plot: {folder / 'lr_find.png'}")
    return LRFindResult(folder, lrs, smooth, raw, suggested, steepest, min_div10)


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _plot(path: Path, lrs: list[float], raw: list[float], smooth: list[float],
          steepest: float | None, min_div10: float | None, cfg: TrainConfig,
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
        lo, hi = min(smooth), max(smooth[: max(1, len(smooth) // 2)])
        ax.set_ylim(lo - 0.1 * abs(hi - lo) - 1e-3, max(hi, smooth[0]) + 0.2 * abs(hi - lo) + 1e-3)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title(f"LR range test: {cfg.model}, {cfg.optimizer} on {splits.source or 'data'}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, path)
