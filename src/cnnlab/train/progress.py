"""Live progress of training: a rich bar per epoch plus one summary line per epoch."""

from __future__ import annotations

import time

from cnnlab.console import console, progress_bar


class TrainProgress:
    """Shows step progress with running loss/accuracy; prints a line at each epoch's end."""

    def __init__(self, epochs: int, steps_per_epoch: int, images_per_epoch: int = 0,
                 enabled: bool = True) -> None:
        self.epochs, self.steps, self.enabled = epochs, steps_per_epoch, enabled
        self.images = images_per_epoch
        self.live = enabled and console.is_terminal
        self.bar = progress_bar("epoch {task.fields[epoch]}/{task.fields[of]}",
                                "loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}",
                                live=self.live)
        self.task = None
        self._t_epoch = time.perf_counter()

    def __enter__(self) -> TrainProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def start_epoch(self, epoch: int, done: int) -> None:
        """Begin the bar for epoch `epoch` (0-based) at step `done`."""
        self._t_epoch = time.perf_counter()
        if not self.live:
            return
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task("train", total=self.steps, completed=done, epoch=epoch + 1,
                                      of=self.epochs, loss=0.0, acc=0.0)

    def step(self, running: dict) -> None:
        """Advance one step with the running numbers."""
        if not self.live or self.task is None:
            return
        n = max(running["n"], 1)
        self.bar.update(self.task, advance=1, loss=running["loss"] / n,
                        acc=running["correct"] / n)

    def end_epoch(self, row: dict, improved: bool, stopped: bool) -> None:
        """Print the epoch's summary line: this epoch's seconds, images/s and the run's ETA."""
        if not self.enabled:
            return
        took = time.perf_counter() - self._t_epoch
        val = "" if row["val_loss"] is None else \
            f"  val loss {row['val_loss']:.4f} acc {row['val_acc']:.4f}"
        mark = " [green]*best[/]" if improved else ""
        stop = "  [yellow]early stop[/]" if stopped else ""
        left = self.epochs - row["epoch"]
        eta = "" if stopped or left <= 0 else f", ETA {_clock(left * took)}"
        speed = f", {self.images / took:,.0f} img/s" if self.images and took > 0 else ""
        console.print(f"epoch {row['epoch']:>3}/{self.epochs}  train loss {row['train_loss']:.4f}"
                      f" running acc {row['train_acc']:.4f}{val}  ({took:.1f}s{speed}{eta})"
                      f"{mark}{stop}")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"
