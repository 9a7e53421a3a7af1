"""Training events: the Callback base class and the FitContext every event is handed.

The loop (train/trainer.py) sends these events to each callback, in list order:

    on_fit_start(ctx)               once, before the first step (also when resuming)
    on_epoch_start(ctx)             before each epoch's first step (or the resumed step)
    on_step_end(ctx, loss)          after each optimization step (loss: that batch's mean loss)
    on_train_epoch_end(ctx)         after the epoch's last step, before its validation
    on_epoch_end(ctx, row)          after validation; `row` is the epoch's metrics.csv row
    on_fit_end(ctx)                 once, after the last epoch (not after an interruption)
    on_run_end(ctx, metrics, error) sent by run.py once the run folder is complete (after
                                    finalize), or with `error` when the run failed

and callbacks send two to each other through `ctx.emit`:

    on_best(ctx, row)               the epoch just validated is the new best (EarlyStopping,
                                    through ctx.mark_best; the checkpointer saves best.pt)
    on_step_val(ctx, row)           a mid-epoch validation {"step", "val_loss", "val_acc"}
                                    (EvalEvery; CsvLogger puts it in steps.csv)

A callback sees the run only through the FitContext: the state, the model, the run folder, the
learning rate, validate(), save(), request_stop(), notes. A callback with state that --resume
must restore defines `state_key`, `state_dict()` and `load_state_dict(state)`: the trainer keeps
it in last.pt. A callback whose `name` is a default callback's replaces it (run.callback_list).
"""

from __future__ import annotations

import contextlib
from typing import Any


class Callback:
    """Base class: override the events you need."""

    name: str | None = None  # a default callback's name: a user callback of that name replaces it

    def on_fit_start(self, ctx: FitContext) -> None:
        """Before the first step."""

    def on_epoch_start(self, ctx: FitContext) -> None:
        """Before each epoch."""

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """After each optimization step."""

    def on_step_val(self, ctx: FitContext, row: dict) -> None:
        """After a mid-epoch validation (--eval-every): {"step", "val_loss", "val_acc"}."""

    def on_train_epoch_end(self, ctx: FitContext) -> None:
        """After the epoch's last step, before validation (e.g. swap in averaged weights)."""

    def on_best(self, ctx: FitContext, row: dict) -> None:
        """The epoch just validated is the best so far (sent before on_epoch_end's saves)."""

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """After each epoch's validation."""

    def on_fit_end(self, ctx: FitContext) -> None:
        """After the last epoch."""

    def on_run_end(self, ctx: FitContext, metrics: dict | None,
                   error: BaseException | None) -> None:
        """After finalize wrote metrics.json, plots and report.html (run.py); metrics is None
        and error set when training or finalize failed (loggers upload and close here)."""


def monitored(row: dict, monitor: str) -> tuple[float, float]:
    """An epoch's score for --monitor, lower is better: (value, tie-break loss)."""
    loss = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
    if monitor == "last":  # every epoch beats the one before
        return -float(row["epoch"]), loss
    if monitor == "val_acc" and row.get("val_acc") is not None:
        return -float(row["val_acc"]), loss
    return loss, loss


class FitContext:
    """What a callback may see and do during fit: the one door between callbacks and the loop.

    `loop` is the Trainer (typed loosely: the trainer imports this module, not the reverse).
    Nothing else of the Trainer is reachable from here: what a callback needs is named below.
    """

    def __init__(self, loop: Any, callbacks: list[Callback]) -> None:
        self._loop = loop
        self.callbacks = callbacks
        self.lr_scale = 1.0  # multiplies the schedule's rate (--schedule plateau sets it)

    # ---- what a callback reads -------------------------------------------------------------
    @property
    def state(self) -> Any:  # noqa: ANN401 - train.trainer.TrainState
        """Epoch, step, history and running sums (TrainState), saved in last.pt."""
        return self._loop.state

    @property
    def model(self) -> Any:  # noqa: ANN401 - torch.nn.Module
        """The network being trained (a callback may swap its weights, as --ema does)."""
        return self._loop.model

    @property
    def cfg(self) -> Any:  # noqa: ANN401 - settings.TrainConfig
        """The run's settings."""
        return self._loop.cfg

    @property
    def splits(self) -> Any:  # noqa: ANN401 - data.imageset.DataSplits
        """The data."""
        return self._loop.splits

    @property
    def run_dir(self) -> Any:  # noqa: ANN401 - pathlib.Path or None
        """The run folder (None for a Trainer without one, e.g. lr-find's)."""
        return self._loop.run_dir

    @property
    def notes(self) -> list[str]:
        """Lines for the console and metrics.json's notes (a callback may append one)."""
        return self._loop.notes

    @property
    def frozen(self) -> Any:  # noqa: ANN401 - train.transfer.Frozen or None
        """The frozen part of the model (--freeze), which stays in eval mode."""
        return self._loop.frozen

    @property
    def total_epochs(self) -> int:
        """Epochs the run trains (--epochs, or enough to hold --steps)."""
        return self._loop.total_epochs

    @property
    def total_steps(self) -> int:
        """Optimization steps the run trains."""
        return self._loop.total_steps

    @property
    def steps_per_epoch(self) -> int:
        """Optimization steps per epoch."""
        return self._loop.steps_per_epoch

    @property
    def resolved(self) -> dict:
        """What the settings resolved to (lr, device, precision, ...): config.yaml's `resolved`."""
        return self._loop.resolved

    @property
    def verbose(self) -> bool:
        """Whether the run prints."""
        return self._loop.verbose

    @property
    def optimizer(self) -> Any:  # noqa: ANN401 - torch.optim.Optimizer
        """The optimizer: its param_groups hold the rate and momentum the schedule set."""
        return self._loop.optimizer

    def current_lr(self) -> float:
        """The learning rate of the first parameter group."""
        return self._loop.current_lr()

    # ---- what a callback does ----------------------------------------------------------------
    def validate(self) -> tuple[float | None, float] | None:
        """(loss, accuracy) on the validation split now, of the weights the epoch line scores
        (a callback's `averaged(ctx)` context, --ema, lends them); None without that split."""
        val = self.splits.val
        if val is None or not len(val):
            return None
        lend = next((cb.averaged(self) for cb in self.callbacks if hasattr(cb, "averaged")),
                    contextlib.nullcontext())
        with lend:
            got = self._loop.validate()
        if self.frozen is not None:  # scoring put the whole model back in train mode
            self.frozen.after_train()
        return got

    def score(self, split: str) -> tuple[Any, float | None]:
        """(probabilities [N, classes], loss) of the trained weights on `split` now (a frozen
        backbone's through its cached features), as the final scoring computes them."""
        return self._loop.evaluate_split(split)

    def save(self, name: str = "last.pt", include_training: bool | None = None) -> None:
        """Write a checkpoint into the run folder (rank 0 only; last.pt with the state)."""
        self._loop.save(name, include_training)

    def request_stop(self) -> None:
        """End training after this epoch (early stopping, a pruned trial, a user's rule)."""
        self.state.stopped_early = True

    def mark_best(self, row: dict) -> None:
        """This epoch is the best so far: record it and send on_best (best.pt is saved)."""
        self.state.best_epoch = self.state.epoch
        self.emit("on_best", row)

    def emit(self, event: str, *args: object) -> None:
        """Call `event` on every callback that has it, in order."""
        for cb in self.callbacks:
            fn = getattr(cb, event, None)
            if fn is not None:
                fn(self, *args)

