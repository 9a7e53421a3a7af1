"""Callbacks of the training recipe: weight averaging (--ema) and --schedule plateau.

Both keep state that --resume must restore; the trainer saves each callback's `state_dict()`
in last.pt under its `state_key` and hands it back through `load_state_dict`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from cnnlab.train.events import Callback, FitContext, monitored

if TYPE_CHECKING:
    from cnnlab.settings import TrainConfig


def ema_decay(decay: float, updates: int) -> float:
    """The decay of update number `updates` (1-based): min(decay, (1 + t) / (10 + t)).

    TensorFlow's ExponentialMovingAverage(num_updates) warm-up: early averages do not hold on
    to the random initial weights, so the average is useful after the first epoch already.
    """
    return min(decay, (1 + updates) / (10 + updates))


class WeightAveraging(Callback):
    """--ema DECAY: an exponential moving average of the weights, updated after every step.

    Every floating-point entry of the state dict is averaged, BatchNorm running statistics
    included; integer buffers (BatchNorm's batch counter) are copied. Before each validation the
    averaged weights are swapped into the model, so validation, best.pt, last.pt's weights, the
    final metrics and the report all use them; the next epoch swaps the trained weights back.
    """

    name = state_key = "ema"

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.avg: dict[str, torch.Tensor] | None = None
        self.raw: dict[str, torch.Tensor] | None = None  # trained weights while avg is swapped in

    def on_fit_start(self, ctx: FitContext) -> None:
        """Start the average at the initial weights (unless resumed)."""
        if self.raw is not None:  # resumed from an epoch end: continue from the trained weights
            ctx.model.load_state_dict(self.raw)
            self.raw = None
        now = ctx.model.state_dict()
        if self.avg is None:
            self.avg = {k: v.detach().clone() for k, v in now.items()}
        else:  # restored from a checkpoint read onto the CPU
            self.avg = {k: a.to(now[k].device) for k, a in self.avg.items()}
        # The state dict's tensors share storage with the weights, which the optimizer and
        # load_state_dict update in place: collected once, averaged with one fused call a step.
        floats = [k for k, a in self.avg.items() if a.is_floating_point()]
        self._pairs = ([self.avg[k] for k in floats], [now[k] for k in floats])
        self._ints = [(self.avg[k], now[k]) for k in self.avg if k not in set(floats)]

    @torch.no_grad()
    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """avg = d * avg + (1 - d) * weights."""
        self.updates += 1
        d = ema_decay(self.decay, self.updates)
        avg, live = self._pairs
        if avg:
            torch._foreach_lerp_(avg, live, 1 - d)
        for a, v in self._ints:
            a.copy_(v)

    def on_train_epoch_end(self, ctx: FitContext) -> None:
        """Swap the average in for validation and checkpoints."""
        self.raw = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        ctx.model.load_state_dict(self.avg)

    def on_epoch_start(self, ctx: FitContext) -> None:
        """Put the trained weights back before training goes on."""
        if self.raw is not None:
            ctx.model.load_state_dict(self.raw)
            self.raw = None

    @contextlib.contextmanager
    def averaged(self, ctx: FitContext) -> Iterator[None]:
        """The averaged weights in the model for a mid-epoch evaluation (--eval-every), so step
        and epoch validation score the same weights; the trained ones are put back after."""
        if self.avg is None or self.raw is not None:  # nothing averaged yet, or already in
            yield
            return
        raw = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        ctx.model.load_state_dict(self.avg)
        try:
            yield
        finally:
            ctx.model.load_state_dict(raw)

    def state_dict(self) -> dict:
        """The average, its update count and (at an epoch end) the trained weights."""
        return {"avg": self.avg, "updates": self.updates, "raw": self.raw}

    def load_state_dict(self, state: dict) -> None:
        """Restore from last.pt."""
        self.avg, self.updates, self.raw = state["avg"], state["updates"], state.get("raw")


class ReduceOnPlateau(Callback):
    """--schedule plateau: multiply the learning rate by --lr-gamma after --lr-patience epochs
    without a lower validation loss (training loss without a validation split)."""

    name = state_key = "plateau"

    def __init__(self, gamma: float, patience: int) -> None:
        self.gamma, self.patience = gamma, patience
        self.scale, self.best, self.bad = 1.0, float("inf"), 0

    def on_fit_start(self, ctx: FitContext) -> None:
        """Hand the (restored) scale to the schedule."""
        ctx.lr_scale = self.scale

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Count bad epochs; drop the rate when there were too many."""
        monitor, _ = monitored(row, "val_loss")
        if monitor < self.best - 1e-12:
            self.best, self.bad = monitor, 0
            return
        self.bad += 1
        if self.bad >= self.patience:
            self.scale *= self.gamma
            self.bad = 0
            ctx.lr_scale = self.scale

    def state_dict(self) -> dict:
        """Scale, best loss, bad epochs."""
        return {"scale": self.scale, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        """Restore from last.pt."""
        self.scale, self.best, self.bad = state["scale"], state["best"], state["bad"]


def recipe_callbacks(cfg: TrainConfig) -> list[Callback]:
    """The recipe's callbacks a config asks for (they run before the checkpointer)."""
    cbs: list[Callback] = []
    if cfg.schedule == "plateau":
        cbs.append(ReduceOnPlateau(cfg.lr_gamma, cfg.lr_patience))
    if cfg.ema:
        cbs.append(WeightAveraging(cfg.ema))
    return cbs
