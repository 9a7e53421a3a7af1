"""Registries of optimizers and learning-rate schedules: a name maps to how it is built."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from cnnlab.choices import OPTIMIZER_LRS


@dataclass(frozen=True)
class OptimizerSpec:
    """How to build one optimizer, and the learning rate it usually starts from."""

    build: Callable[[list[dict], float, dict], torch.optim.Optimizer]
    default_lr: float


def _fused(groups: list[dict]) -> dict:
    # One fused kernel per step instead of ~10 tensor ops per parameter: the Adam(W) step of
    # the seeds' CNNs measured 15x cheaper on the CPU (same results up to float rounding).
    params = [p for g in groups for p in g["params"]]
    ok = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                              for p in params)
    return {"fused": True} if ok else {}


OPTIMIZERS: dict[str, OptimizerSpec] = {
    "sgd": OptimizerSpec(lambda g, lr, s: torch.optim.SGD(g, lr=lr, momentum=s["momentum"]),
                         OPTIMIZER_LRS["sgd"]),
    "adam": OptimizerSpec(lambda g, lr, s: torch.optim.Adam(g, lr=lr, **_fused(g)),
                          OPTIMIZER_LRS["adam"]),
    "adamw": OptimizerSpec(lambda g, lr, s: torch.optim.AdamW(g, lr=lr, **_fused(g)),
                           OPTIMIZER_LRS["adamw"]),
    "rmsprop": OptimizerSpec(lambda g, lr, s: torch.optim.RMSprop(g, lr=lr, momentum=0.0),
                             OPTIMIZER_LRS["rmsprop"]),
}

@dataclass(frozen=True)
class LrParams:
    """What the step-based schedules need besides (step, total): sizes in optimization steps."""

    steps_per_epoch: int = 1
    step_size: int | None = None  # `step`: epochs between drops [default: a third of the run]
    milestones: tuple[float, ...] | None = None  # `multistep`: epochs [default: 1/2 and 3/4]
    gamma: float = 0.1  # factor per drop


ONECYCLE_UP = 0.3  # share of the steps spent climbing to the peak rate
MOMENTUM_RANGE = (0.85, 0.95)  # one-cycle's momentum (SGD) or beta1 (Adam): low at peak rate


def _cos_between(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * t)) / 2


def _cycle(step: int, total: int, start: float, peak: float, end: float) -> float:
    """Cosine from `start` to `peak` over the first ONECYCLE_UP of the steps, then to `end`."""
    up = max(1, round(ONECYCLE_UP * total))
    if step < up:
        return _cos_between(start, peak, step / up)
    return _cos_between(peak, end, min(step - up, total - up) / max(total - up, 1))


def _onecycle(step: int, total: int, p: LrParams) -> float:
    # fastai/torch one-cycle shape: cosine up from 1/25 of the rate over the first 30% of the
    # steps, then cosine down to 1/25e4 of it.
    return _cycle(step, total, 1 / 25, 1.0, 1 / 25e4)


def onecycle_momentum(step: int, total: int, warmup: float = 0.0) -> float:
    """One-cycle's momentum at optimization step `step`: the mirror image of its rate, cosine
    from 0.95 down to 0.85 while the rate climbs, back to 0.95 while it falls (0.95 during
    --warmup), as torch's OneCycleLR and fastai's fit_one_cycle do."""
    lo, hi = MOMENTUM_RANGE
    w = warmup_steps(warmup, total)
    if step < w:
        return hi
    return _cycle(step - w, max(total - w, 1), hi, lo, hi)


def set_momentum(optimizer: torch.optim.Optimizer, momentum: float) -> None:
    """Set SGD's momentum or Adam(W)'s beta1 in every group (optimizers without momentum, such
    as RMSprop here, are left alone)."""
    for g in optimizer.param_groups:
        if "betas" in g:
            g["betas"] = (momentum, g["betas"][1])
        elif g.get("momentum"):
            g["momentum"] = momentum


def _step(step: int, total: int, p: LrParams) -> float:
    spe = max(p.steps_per_epoch, 1)
    epochs = max(1, total // spe)
    size = p.step_size or max(1, epochs // 3)
    return p.gamma ** (step // (size * spe))


def _multistep(step: int, total: int, p: LrParams) -> float:
    spe = max(p.steps_per_epoch, 1)
    epochs = total / spe
    marks = p.milestones if p.milestones else (epochs / 2, epochs * 3 / 4)
    return p.gamma ** sum(step >= round(m * spe) for m in marks)


# A schedule maps (step, total steps, parameters) to a factor of each group's initial learning
# rate; it is a pure function of the step, so a resumed run continues the same sequence.
Schedule = Callable[[int, int, LrParams], float]
SCHEDULES: dict[str, Schedule] = {
    "none": lambda step, total, p: 1.0,
    "cosine": lambda step, total, p: 0.5 * (1 + math.cos(math.pi * min(step, total)
                                                         / max(total, 1))),
    "onecycle": _onecycle,
    "step": _step,
    "multistep": _multistep,
    # constant here; train/recipe.py's ReduceOnPlateau scales it down when the validation loss
    # stops falling
    "plateau": lambda step, total, p: 1.0,
}


def warmup_steps(warmup: float, total: int) -> int:
    """--warmup as steps: a value below 1 is a fraction of all steps."""
    if warmup <= 0:
        return 0
    return min(total, round(warmup * total) if warmup < 1 else int(warmup))


def lr_factor(schedule: str, step: int, total: int, warmup: float, params: LrParams) -> float:
    """The factor at optimization step `step` (0-based): a linear warmup over the first W
    steps ((step + 1) / W), then the schedule over the remaining total - W steps."""
    w = warmup_steps(warmup, total)
    if step < w:
        return (step + 1) / w
    return SCHEDULES[schedule](step - w, max(total - w, 1), params)
