"""Training events and the callbacks that act on them.

The loop (train/trainer.py) only trains and validates; everything else happens in a callback
listening to one of six named events:

    on_fit_start(trainer)            once, before the first step (also when resuming)
    on_epoch_start(trainer)          before each epoch's first step (or the resumed step)
    on_step_end(trainer, loss)       after each optimization step (loss: that batch's mean loss)
    on_train_epoch_end(trainer)      after the epoch's last step, before its validation
    on_epoch_end(trainer, row)       after validation; `row` is the epoch's metrics.csv row
    on_fit_end(trainer)              once, after the last epoch (not after an interruption)
    on_run_end(trainer, metrics, error)  sent by run.py once the run folder is complete
                                     (after finalize), or with `error` when the run failed

Callbacks run in list order. New behaviour (weight averaging, loggers, schedules) is a new
callback, not an edit of the loop. A callback with state that --resume must restore defines
`state_key`, `state_dict()` and `load_state_dict(state)`: the trainer keeps it in last.pt.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING

from cnnlab import io
from cnnlab.console import console
from cnnlab.train import distributed
from cnnlab.train.progress import TrainProgress

if TYPE_CHECKING:
    from cnnlab.train.trainer import Trainer


class Callback:
    """Base class: override the events you need."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Before each epoch."""

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        """After each optimization step."""

    def on_train_epoch_end(self, trainer: Trainer) -> None:
        """After the epoch's last step, before validation (e.g. swap in averaged weights)."""

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """After each epoch's validation."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch."""

    def on_run_end(self, trainer: Trainer, metrics: dict | None,
                   error: BaseException | None) -> None:
        """After finalize wrote metrics.json, plots and report.html (run.py); metrics is None
        and error set when training or finalize failed (loggers upload and close here)."""


class FrozenLayersEval(Callback):
    """Frozen layers stay in eval mode while the rest trains (fixed BatchNorm statistics)."""

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Put frozen parts back into eval mode after model.train()."""
        if trainer.frozen is not None:
            trainer.frozen.after_train()


def monitored(row: dict, monitor: str) -> tuple[float, float]:
    """An epoch's score for --monitor, lower is better: (value, tie-break loss)."""
    loss = row["val_loss"] if row["val_loss"] is not None else row["train_loss"]
    if monitor == "last":  # every epoch beats the one before
        return -float(row["epoch"]), loss
    if monitor == "val_acc" and row.get("val_acc") is not None:
        return -float(row["val_acc"]), loss
    return loss, loss


class EarlyStopping(Callback):
    """Tracks the best epoch by --monitor (validation loss or accuracy; the training loss
    without a validation split) and stops on --patience."""

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """Update best epoch, bad epochs and the stop flag."""
        s, patience = trainer.state, trainer.cfg.patience
        value, loss = monitored(row, trainer.cfg.monitor)
        s.improved = value < s.best_val_loss - 1e-12 or (
            abs(value - s.best_val_loss) <= 1e-12 and loss < s.best_tiebreak - 1e-12)
        if s.improved:
            s.best_val_loss, s.best_tiebreak, s.best_epoch, s.bad_epochs = \
                value, loss, s.epoch, 0
        else:
            s.bad_epochs += 1
        if patience is not None and s.bad_epochs >= patience:
            s.stopped_early = True


class Checkpointer(Callback):
    """best.pt when the epoch improved, then last.pt (with the full training state)."""

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """Save after every epoch; best.pt first so a crash between the two stays consistent."""
        if trainer.state.improved:
            trainer.save("best.pt")
        trainer.save("last.pt")


class KeepEvery(Callback):
    """--keep-every N: epoch_<k>.pt with the full training state every N epochs, so a run can
    be continued from any of them with --resume-from (EECS 553's "resume from any checkpoint")."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """Save epoch_<k>.pt after epochs k = N, 2N, ..."""
        k = trainer.state.epoch
        if self.every and k % self.every == 0:
            trainer.save(f"epoch_{k}.pt", include_training=True)


class EvalEvery(Callback):
    """--eval-every N: score the validation split every N steps and print one line; the numbers
    are left in `trainer.step_val` for CsvLogger's steps.csv (USI 1.3.1, CS 475's dev curve).
    A callback with an `averaged(trainer)` context (--ema) lends its weights for the scoring,
    so the curve ends at the epoch line's number."""

    def __init__(self, every: int, verbose: bool = True) -> None:
        self.every, self.verbose = every, verbose

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        """Evaluate when the global step is a multiple of N."""
        s, val = trainer.state, trainer.splits.val
        if not self.every or s.global_step % self.every or val is None or not len(val):
            return
        # the weights the epoch line scores: the averaged ones when --ema is on
        weights = next((cb.averaged(trainer) for cb in trainer.callbacks
                        if hasattr(cb, "averaged")), contextlib.nullcontext())
        with weights:
            if distributed.is_distributed():
                vloss, vacc = trainer._sharded_val()
            else:
                probs, vloss = trainer.evaluate_split("val")
                vacc = float((probs.argmax(1) == val.labels.numpy()).mean())
        if trainer.frozen is not None:  # evaluation put the whole model back in train mode
            trainer.frozen.after_train()
        trainer.step_val = {"step": s.global_step, "val_loss": vloss, "val_acc": vacc}
        if self.verbose and distributed.is_main():
            r, n = s.running, max(s.running["n"], 1)
            shown = "n/a" if vloss is None else f"{vloss:.4f}"
            console.print(f"step {s.global_step:>6}/{trainer.total_steps}  train loss "
                          f"{r['loss'] / n:.4f} acc {r['correct'] / n:.4f}  val loss {shown} "
                          f"acc {vacc:.4f}", highlight=False)


def _step_of(line: str) -> int | None:
    head = line.split(",", 1)[0]
    return int(head) if head.isdigit() else None


class CsvLogger(Callback):
    """metrics.csv (one row per epoch) and steps.csv: a row every --log-every N steps and every
    --eval-every N steps (then with val_loss/val_acc columns)."""

    def __init__(self, every: int = 0, eval_every: int = 0) -> None:
        self.every, self.eval_every = every, eval_every

    def on_fit_start(self, trainer: Trainer) -> None:
        """Drop steps.csv rows past the step training starts from: a run resumed from an
        earlier checkpoint (or after a crash mid-epoch) logs those steps again."""
        path = trainer.run_dir / "steps.csv" if trainer.run_dir is not None else None
        if path is None or not path.is_file() or not distributed.is_main():
            return
        lines = path.read_text().splitlines(keepends=True)
        keep = lines[:1] + [ln for ln in lines[1:] if ln.endswith("\n") and
                            _step_of(ln) is not None and _step_of(ln) <= trainer.state.global_step]
        if len(keep) != len(lines):
            io.write_text(path, "".join(keep))

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        """Append a steps.csv row when a logging or evaluation step is due."""
        s = trainer.state
        due = any(n and s.global_step % n == 0 for n in (self.every, self.eval_every))
        if not due or not distributed.is_main():
            return
        r = s.running
        row = {"step": s.global_step, "epoch": s.epoch + 1, "lr": trainer.current_lr(),
               "loss": loss, "train_loss": r["loss"] / max(r["n"], 1),
               "train_acc": r["correct"] / max(r["n"], 1)}
        if self.eval_every:
            got = getattr(trainer, "step_val", None) or {}
            fresh = got.get("step") == s.global_step
            row["val_loss"] = got.get("val_loss") if fresh else None
            row["val_acc"] = got.get("val_acc") if fresh else None
        path = trainer.run_dir / "steps.csv"
        new = not path.exists()
        with open(path, "a") as fh:  # append-only log: a torn last line loses one step
            if new:
                fh.write(",".join(row) + "\n")
            fh.write(",".join(f"{v:.6g}" if isinstance(v, float) else "" if v is None
                              else str(v) for v in row.values()) + "\n")

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """Rewrite metrics.csv with the whole history (atomically)."""
        if distributed.is_main():
            io.write_csv(trainer.run_dir / "metrics.csv", trainer.state.history)


class ProgressBar(Callback):
    """A rich bar per epoch with running loss/accuracy and one summary line per epoch."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: TrainProgress | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        """Open the bar."""
        self.bar = TrainProgress(trainer.total_epochs, trainer.steps_per_epoch,
                                 len(trainer.splits.train), enabled=self.enabled)
        self.bar.__enter__()
        self._t0 = time.perf_counter()

    def on_epoch_start(self, trainer: Trainer) -> None:
        """Start the epoch's bar."""
        if self.bar:
            self.bar.start_epoch(trainer.state.epoch, trainer.state.step_in_epoch)

    def on_step_end(self, trainer: Trainer, loss: float) -> None:
        """Advance."""
        if self.bar:
            self.bar.step(trainer.state.running)

    def on_epoch_end(self, trainer: Trainer, row: dict) -> None:
        """Print the epoch line."""
        if self.bar:
            self.bar.end_epoch(row, trainer.state.improved, trainer.state.stopped_early)

    def on_fit_end(self, trainer: Trainer) -> None:
        """Close the bar."""
        self.close()

    def close(self) -> None:
        """Close the bar (also after an error or interruption)."""
        if self.bar:
            self.bar.__exit__(None, None, None)
            self.bar = None


def default_callbacks(cfg: object, verbose: bool, recipe: list[Callback] | None = None
                      ) -> list[Callback]:
    """The callbacks every run has, in the order they must run; `recipe` (train/recipe.py)
    goes before the checkpointer, which saves the state it updates."""
    keep, evals = getattr(cfg, "keep_every", 0), getattr(cfg, "eval_every", 0)
    return [FrozenLayersEval(), *(recipe or []), EarlyStopping(), Checkpointer(),
            *([KeepEvery(keep)] if keep else []), *([EvalEvery(evals, verbose)] if evals else []),
            CsvLogger(getattr(cfg, "log_every", 0), evals), ProgressBar(verbose)]
