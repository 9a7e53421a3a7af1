"""Progress of the doctor's phases: a rich bar while a phase runs, one line when it ends."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cnnlab.console import console, progress_bar


class Phases:
    """Times each phase; shows a bar on a terminal and prints a summary line when verbose."""

    def __init__(self, verbose: bool = True) -> None:
        self.verbose = verbose
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, key: str, label: str, total: int | None = None
              ) -> Iterator[Callable[[int], None]]:
        """Run a phase of `total` steps; yields tick(n) to advance its bar."""
        t0 = time.perf_counter()
        live = self.verbose and console.is_terminal
        # Elapsed and, once a step is done, the estimated time left (hashing, features, label
        # check folds): a long phase says how long it will take.
        bar = progress_bar(label, eta="ETA", live=live)
        with bar:
            task = bar.add_task(label, total=total)
            yield lambda n=1: bar.update(task, advance=n)
        self.seconds[key] = round(time.perf_counter() - t0, 2)
        if self.verbose:
            console.print(f"  {label}: {self.seconds[key]:.1f} s")
