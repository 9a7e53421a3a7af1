"""Command line: thin commands over the API; errors become one line and exit code 2."""

from __future__ import annotations

import os
import sys
import traceback

from cnnlab.cli.app import STATE, app
from cnnlab.cli import train_cmds  # noqa: F401  (registers train, evaluate, predict, models)
from cnnlab.errors import CnnlabError


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `cnnlab` command."""
    if argv is None:
        argv = sys.argv[1:]
    STATE["debug"] = "--debug" in argv or bool(os.environ.get("CNNLAB_DEBUG"))
    try:
        app(args=argv, prog_name="cnnlab", standalone_mode=False)
    except SystemExit as exc:
        raise
    except CnnlabError as exc:
        if STATE["debug"]:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the user must never see a raw traceback
        import click

        if isinstance(exc, click.exceptions.Abort):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if STATE["debug"]:
            traceback.print_exc()
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: unexpected {type(exc).__name__}: {msg[:300]} (run with --debug for the "
              "traceback)", file=sys.stderr)
        sys.exit(1)
