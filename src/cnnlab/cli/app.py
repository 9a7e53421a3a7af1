"""The typer application shared by every command module."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="cnnlab",
    help="From a set of images to a trained, measured and explained image classifier.\n\n"
         "Start with `cnnlab train` (built-in digits) or `cnnlab train PATH`.",
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, pwsh
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)

STATE = {"debug": False}


def _print_version(value: bool) -> None:
    if value:
        from cnnlab import __version__

        print(f"cnnlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
          version: bool = typer.Option(False, "--version", is_eager=True,
                                       callback=_print_version, help="Print the version and exit."),
          ) -> None:
    STATE["debug"] = debug


def parse_list(text: str | None, cast: type = float) -> list | None:
    """'1e-3,1e-2' -> [0.001, 0.01]."""
    if text is None:
        return None
    try:
        return [cast(v.strip()) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of "
                                 f"{cast.__name__} values") from None


def cell(v: object) -> str:
    """A table cell: floats with 4 decimals, None as '-'."""
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)
