"""One rich console for the whole tool; messages go to stderr so stdout stays for data."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console

console = Console(stderr=True, highlight=False, soft_wrap=True)

# Tables are data: they go to stdout so `cnnlab models | grep resnet` works; piped, rich would
# wrap at 80 columns and split rows over lines that grep then shows only in part.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def progress_bar(title: str, *extra: str, elapsed: bool = True, eta: str = "",
                 live: bool = True) -> object:
    """A transient rich bar on the console: title, bar, done/total, `extra` text columns (rich
    markup with {task.fields[...]}), elapsed time, `eta` label and time left."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [TextColumn(f"[bold]{title}"), BarColumn(), MofNCompleteColumn(),
               *(TextColumn(e) for e in extra)]
    columns += [TimeElapsedColumn()] if elapsed else []
    columns += [TextColumn(eta)] if eta else []
    return Progress(*columns, TimeRemainingColumn(), console=console, transient=True,
                    disable=not live)


def data_progress(verbose: bool, min_total: int = 200):  # noqa: ANN201
    """A progress factory for long data reads, in the form cnnlab.data.load expects:
    factory(label, total) -> tick(n). Silent when not verbose or not on a terminal."""
    if not verbose:
        return None

    def factory(label: str, total: int):  # noqa: ANN202
        if total < min_total or not console.is_terminal:
            return lambda n: None
        bar = progress_bar(label, elapsed=False)
        bar.start()
        task = bar.add_task(label, total=total)
        done = {"n": 0}

        def tick(n: int) -> None:
            done["n"] += n
            bar.update(task, advance=n)
            if done["n"] >= total:
                bar.stop()
        return tick
    return factory


@contextlib.contextmanager
def busy(what: str, verbose: bool = True) -> Iterator[None]:
    """A spinner with `what` while a long step without steps of its own runs (a terminal only),
    then one line with its duration."""
    import time

    if not verbose:
        yield
        return
    t0 = time.perf_counter()
    # Only a terminal animates: in Jupyter rich's spinner needs ipywidgets (without it every
    # refresh warns "install ipywidgets"), and in a log file it would be noise.
    spinner = console.status(what + " ...") if console.is_terminal and not console.is_jupyter \
        else contextlib.nullcontext()
    with spinner:
        yield
    console.print(f"  [dim]{what}: {time.perf_counter() - t0:.1f}s[/]")
