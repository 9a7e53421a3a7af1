"""Command line: thin commands over the API; errors become one line and exit code 2."""

from __future__ import annotations

import gc
import os
import re
import sys
import traceback
from typing import NoReturn

from cnnlab.cli import (
    augment_cmds,  # noqa: F401  (registers augment, transfer)
    data_cmds,  # noqa: F401  (registers data fetch, data list)
    doctor_cmds,  # noqa: F401  (registers doctor)
    experiment_cmds,  # noqa: F401  (sweep, cv, seeds, compare, lr-find)
    explain_cmds,  # noqa: F401  (registers explain ..., report)
    export_cmds,  # noqa: F401  (registers export)
    inspect_cmds,  # noqa: F401  (registers inspect model/conv/data)
    train_cmds,  # noqa: F401  (registers train, evaluate, predict, models)
)
from cnnlab.cli.app import STATE, app
from cnnlab.errors import CnnlabError


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cnnlab` command."""
    if argv is None:
        argv = sys.argv[1:]
    STATE["debug"] = "--debug" in argv or bool(os.environ.get("CNNLAB_DEBUG"))
    # Nothing cnnlab writes may be group- or world-writable, whatever the caller's umask.
    os.umask(os.umask(0o022) | 0o022)
    try:
        _run(argv)
    finally:
        _leave_process_group()
        # The interpreter's last garbage collection at exit walks every object torch,
        # scikit-learn and OpenVINO created: about 2 s after a training run. Every file and
        # run folder is closed and written by now, and objects are still freed (and their
        # files closed) by reference counting; only that last walk over them is skipped.
        gc.freeze()


def _leave_process_group() -> None:
    """Under torchrun: leave the process group now, while the interpreter is whole, not in
    its teardown (where a rank of a finished run once aborted)."""
    if "cnnlab.train.distributed" in sys.modules:  # only a command that trained can be in one
        sys.modules["cnnlab.train.distributed"].leave()


def _run(argv: list[str]) -> None:
    """Run the command; errors become one line and an exit code."""
    try:
        rc = app(args=argv, prog_name="cnnlab", standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(code) returns the code here
            sys.exit(rc)
    except SystemExit:
        raise
    except CnnlabError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        if exc.exit_code == 130:  # Ctrl-C, handled
            _ignore_further_interrupts()
        _exit(f"error: {exc}", exc.exit_code, trace=False)
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        _exit("interrupted", 130, trace=False)
    except OSError as exc:  # disk full, permissions, ...: the environment, not a bug
        from cnnlab.io import write_error_reason

        where = f"{exc.filename}: " if exc.filename else ""
        _exit(f"error: {where}{write_error_reason(exc)}", 2)
    except MemoryError:
        _exit("error: out of memory (try a smaller --batch-size or --image-size)", 2)
    except Exception as exc:  # noqa: BLE001 - the user must never see a raw traceback
        # Usage errors of click or of typer's vendored copy of it (no `click` module then).
        if type(exc).__name__ == "Abort":
            _exit("aborted", 130, trace=False)
        if callable(getattr(exc, "format_message", None)) and isinstance(
                getattr(exc, "exit_code", None), int):
            _exit(usage_error_line(exc), exc.exit_code, trace=False)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _exit(f"error: unexpected {type(exc).__name__}: {msg[:300]} (run with --debug for the "
              "traceback)", 1)


def _exit(line: str, code: int, trace: bool = True) -> NoReturn:
    """Print the error's one line on stderr and exit with `code`; with --debug (and `trace`)
    the exception's traceback first."""
    if trace and STATE["debug"]:
        traceback.print_exc()
    print(line, file=sys.stderr)
    sys.exit(code)


def usage_error_line(exc: Exception) -> str:
    """A click usage error as one line: the message and where the help is (click prints four:
    the usage, a hint, a blank line and the message)."""
    msg = " ".join(exc.format_message().split()).rstrip(".")  # type: ignore[attr-defined]
    msg = re.sub(r"\(Possible options: ([^)]*)\)", r"(did you mean \1?)", msg)
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", "") or "cnnlab"
    return f"error: {msg[:1].lower()}{msg[1:]} (see '{path} -h')"


def _ignore_further_interrupts() -> None:
    """After a Ctrl-C has been handled, another one must not break the exit: it would land in
    an atexit handler (joining worker threads, flushing) and print its traceback."""
    import signal

    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread (cnnlab.cli.main called from a thread)
        pass
