"""The learning-rate range test on a Trainer: train briefly while the rate grows exponentially.

`cnnlab lr-find` (experiments/lrfind.py) writes its curve and plot; `--recipe fast` runs it on
the run's own Trainer to pick its learning rate (train/autorecipe.py). Both read the curve with
`suggest` below, so the rule is written once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from cnnlab.errors import TrainingError

if TYPE_CHECKING:
    from cnnlab.train.trainer import Trainer


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


def range_test(trainer: Trainer, start_lr: float, end_lr: float, steps: int,
               diverge: float = 4.0) -> tuple[list[float], list[float]]:
    """(rates, raw losses) of up to `steps` training steps at exponentially growing rates, with
    the Trainer's own batches (sampler, augmentation, mixing) and training step; it stops early
    once the running loss exceeds `diverge` times its best. The model and optimizer are changed:
    callers that go on training restore them (train/autorecipe.py)."""
    base_lr = trainer.cfg.resolved_lr()
    groups = trainer.optimizer.param_groups
    mults = [g["lr"] / base_lr if base_lr else 1.0 for g in groups]
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
            for g, mult in zip(groups, mults, strict=True):
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
    return lrs, raw
