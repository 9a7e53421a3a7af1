"""The callbacks every run has: frozen layers, early stopping, checkpoints, logs, progress.

Each acts on the events of train/events.py and sees the run only through its FitContext (ctx);
`default_callbacks` lists them in the order they must run. New behaviour (weight averaging,
loggers, schedules) is a new callback, not an edit of the loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnnlab import io
from cnnlab.console import console
from cnnlab.train import distributed
from cnnlab.train.events import Callback, FitContext, monitored
from cnnlab.train.progress import TrainProgress
from cnnlab.train.recipe import recipe_callbacks

if TYPE_CHECKING:
    from cnnlab.settings import TrainConfig

__all__ = ["Callback", "FitContext", "monitored", "default_callbacks"]  # Callback: its old home


class FrozenLayersEval(Callback):
    """Frozen layers stay in eval mode while the rest trains (fixed BatchNorm statistics)."""

    name = "frozen_eval"

    def on_epoch_start(self, ctx: FitContext) -> None:
        """Put frozen parts back into eval mode after model.train()."""
        if ctx.frozen is not None:
            ctx.frozen.after_train()


class EarlyStopping(Callback):
    """Tracks the best epoch by --monitor (validation loss or accuracy; the training loss
    without a validation split), marks it (best.pt) and stops after --patience epochs without
    a better one. Its counts are its own and are kept in last.pt."""

    name = "early_stopping"
    state_key = "early_stopping"

    def __init__(self, patience: int | None, monitor: str) -> None:
        self.patience, self.monitor = patience, monitor
        self.best, self.tiebreak, self.bad = float("inf"), float("inf"), 0

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Mark a better epoch as the best, else count it; stop when patience runs out."""
        value, loss = monitored(row, self.monitor)
        if value < self.best - 1e-12 or (abs(value - self.best) <= 1e-12 and
                                         loss < self.tiebreak - 1e-12):
            self.best, self.tiebreak, self.bad = value, loss, 0
            ctx.mark_best(row)
        else:
            self.bad += 1
        if self.patience is not None and self.bad >= self.patience:
            ctx.request_stop()

    def state_dict(self) -> dict:
        """Best value, its tie-break loss, epochs since."""
        return {"best": self.best, "tiebreak": self.tiebreak, "bad": self.bad}

    def load_state_dict(self, state: dict) -> None:
        """Restore from last.pt."""
        self.best, self.tiebreak, self.bad = state["best"], state["tiebreak"], state["bad"]


class Checkpointer(Callback):
    """best.pt when the epoch is the best (on_best), then last.pt (with the full training
    state) after every epoch: best.pt first, so a crash between the two stays consistent."""

    name = "checkpoint"

    def on_best(self, ctx: FitContext, row: dict) -> None:
        """Save best.pt."""
        ctx.save("best.pt")

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Save last.pt."""
        ctx.save("last.pt")


class KeepEvery(Callback):
    """--keep-every N: epoch_<k>.pt with the full training state every N epochs, so a run can
    be continued from any of them with --resume-from (EECS 553's "resume from any checkpoint")."""

    name = "keep_every"

    def __init__(self, every: int) -> None:
        self.every = every

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Save epoch_<k>.pt after epochs k = N, 2N, ..."""
        k = ctx.state.epoch
        if self.every and k % self.every == 0:
            ctx.save(f"epoch_{k}.pt", include_training=True)


class EvalEvery(Callback):
    """--eval-every N: score the validation split every N steps (ctx.validate: the weights the
    epoch line scores, --ema's average included), print one line and send the numbers as
    on_step_val, which CsvLogger puts in steps.csv (USI 1.3.1, CS 475's dev curve)."""

    name = "eval_every"

    def __init__(self, every: int, verbose: bool = True) -> None:
        self.every, self.verbose = every, verbose

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """Evaluate when the global step is a multiple of N."""
        s = ctx.state
        if not self.every or s.global_step % self.every:
            return
        got = ctx.validate()
        if got is None:
            return
        vloss, vacc = got
        ctx.emit("on_step_val", {"step": s.global_step, "val_loss": vloss, "val_acc": vacc})
        if self.verbose and distributed.is_main():
            r, n = s.running, max(s.running["n"], 1)
            shown = "n/a" if vloss is None else f"{vloss:.4f}"
            console.print(f"step {s.global_step:>6}/{ctx.total_steps}  train loss "
                          f"{r['loss'] / n:.4f} acc {r['correct'] / n:.4f}  val loss {shown} "
                          f"acc {vacc:.4f}", highlight=False)


def _step_of(line: str) -> int | None:
    head = line.split(",", 1)[0]
    return int(head) if head.isdigit() else None


class CsvLogger(Callback):
    """metrics.csv (one row per epoch) and steps.csv: a row every --log-every N steps and every
    --eval-every N steps (then with val_loss/val_acc columns)."""

    name = "csv_logger"

    def __init__(self, every: int, eval_every: int) -> None:
        self.every, self.eval_every = every, eval_every
        self.step_val: dict = {}  # the last on_step_val

    def on_fit_start(self, ctx: FitContext) -> None:
        """Drop steps.csv rows past the step training starts from: a run resumed from an
        earlier checkpoint (or after a crash mid-epoch) logs those steps again."""
        path = ctx.run_dir / "steps.csv" if ctx.run_dir is not None else None
        if path is None or not path.is_file() or not distributed.is_main():
            return
        lines = path.read_text().splitlines(keepends=True)
        keep = lines[:1] + [ln for ln in lines[1:] if ln.endswith("\n") and
                            _step_of(ln) is not None and _step_of(ln) <= ctx.state.global_step]
        if len(keep) != len(lines):
            io.write_text(path, "".join(keep))

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """Append a steps.csv row when a logging or evaluation step is due."""
        s = ctx.state
        due = any(n and s.global_step % n == 0 for n in (self.every, self.eval_every))
        if not due or not distributed.is_main():
            return
        r = s.running
        row = {"step": s.global_step, "epoch": s.epoch + 1, "lr": ctx.current_lr(),
               "loss": loss, "train_loss": r["loss"] / max(r["n"], 1),
               "train_acc": r["correct"] / max(r["n"], 1)}
        if self.eval_every:
            got = self.step_val
            fresh = got.get("step") == s.global_step
            row["val_loss"] = got.get("val_loss") if fresh else None
            row["val_acc"] = got.get("val_acc") if fresh else None
        path = ctx.run_dir / "steps.csv"
        new = not path.exists()
        with open(path, "a") as fh:  # append-only log: a torn last line loses one step
            if new:
                fh.write(",".join(row) + "\n")
            fh.write(",".join(f"{v:.6g}" if isinstance(v, float) else "" if v is None
                              else str(v) for v in row.values()) + "\n")

    def on_step_val(self, ctx: FitContext, row: dict) -> None:
        """Keep a mid-epoch validation for this step's steps.csv row."""
        self.step_val = row

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Rewrite metrics.csv with the whole history (atomically)."""
        if distributed.is_main():
            io.write_csv(ctx.run_dir / "metrics.csv", ctx.state.history)


class ProgressBar(Callback):
    """A rich bar per epoch with running loss/accuracy and one summary line per epoch."""

    name = "progress"

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: TrainProgress | None = None
        self.best = False  # this epoch is the best so far (on_best)

    def on_fit_start(self, ctx: FitContext) -> None:
        """Open the bar."""
        self.bar = TrainProgress(ctx.total_epochs, ctx.steps_per_epoch,
                                 len(ctx.splits.train), enabled=self.enabled)
        self.bar.__enter__()

    def on_epoch_start(self, ctx: FitContext) -> None:
        """Start the epoch's bar."""
        if self.bar:
            self.bar.start_epoch(ctx.state.epoch, ctx.state.step_in_epoch)

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """Advance."""
        if self.bar:
            self.bar.step(ctx.state.running)

    def on_best(self, ctx: FitContext, row: dict) -> None:
        """Mark the epoch line."""
        self.best = True

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Print the epoch line."""
        if self.bar:
            self.bar.end_epoch(row, self.best, ctx.state.stopped_early)
        self.best = False

    def on_fit_end(self, ctx: FitContext) -> None:
        """Close the bar."""
        self.close()

    def close(self) -> None:
        """Close the bar (also after an error or interruption)."""
        if self.bar:
            self.bar.__exit__(None, None, None)
            self.bar = None


def default_callbacks(cfg: TrainConfig, verbose: bool) -> list[Callback]:
    """The callbacks every run has, in the order they must run: the recipe's (train/recipe.py)
    before early stopping and the checkpointer, which save the state they update."""
    keep, evals = cfg.keep_every, cfg.eval_every
    return [FrozenLayersEval(), *recipe_callbacks(cfg),
            EarlyStopping(cfg.patience, cfg.monitor),
            Checkpointer(), *([KeepEvery(keep)] if keep else []),
            *([EvalEvery(evals, verbose)] if evals else []),
            CsvLogger(cfg.log_every, evals), ProgressBar(verbose)]
