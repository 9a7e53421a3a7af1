"""The typer application shared by every command module."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup

# `cnnlab --help` lists the commands in the order of a project: train, look at the model, run
# experiments, ship it; then the tools around it. Commands not named here come last.
COMMAND_ORDER = ("train", "evaluate", "predict", "explain", "report", "doctor", "sweep", "cv",
                 "seeds", "search", "compare", "lr-find", "transfer", "augment", "export",
                 "data", "inspect", "models")
# The placeholder a value shows in --help when its option names none (one style everywhere:
# an UPPERCASE word, never typer's <int>, <path> or <list[str]>).
_TYPE_METAVARS = {int: "N", float: "NUMBER"}


class _Argument(TyperArgument):
    """An argument whose name column already shows its placeholder (PATH, not path <path>)."""

    def display_type_rich(self, ctx: Any) -> str | None:  # noqa: ARG002
        """No second type column."""
        return None


def _placeholder(param: Any) -> str:
    """PATH, N, NUMBER or TEXT from the parameter's type; an argument's own name."""
    if isinstance(param, TyperArgument):
        return param.name.upper()  # the usage line adds "..." to one that takes several
    desc = param.type_descriptor
    if desc.is_path:
        return "PATH"
    return _TYPE_METAVARS.get(desc.annotation, "TEXT")


def tidy_params(command: Any, ctx: Any) -> None:
    """Give every parameter of `command` (and of its subcommands) the CLI's help style: a flag
    shows no value placeholder and its default as on/off; any other value an UPPERCASE one."""
    if getattr(command, "_cnnlab_tidy", False):
        return
    command._cnnlab_tidy = True
    for param in command.get_params(ctx):  # get_params adds (and caches) --help
        if getattr(param, "is_flag", False):
            param.metavar = ""
            if param.secondary_opts and param.show_default and param.default is not None:
                shown = f"[default: {'on' if param.default else 'off'}]"
                param.help = f"{param.help} {shown}" if param.help else shown
                param.show_default = False  # typer would show the flag's name instead
        elif param.metavar is None:
            param.metavar = _placeholder(param)
        if isinstance(param, TyperArgument):
            param.metavar = param.metavar.upper()
            param.__class__ = _Argument
    for sub in getattr(command, "commands", {}).values():
        tidy_params(sub, ctx)


class CnnlabGroup(TyperGroup):
    """The root command: commands in workflow order, parameters in one help style."""

    def list_commands(self, ctx: Any) -> list[str]:
        """Commands in COMMAND_ORDER, then any others in the order they were added."""
        names = super().list_commands(ctx)
        rank = {n: i for i, n in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: rank.get(n, len(rank)))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The command, its parameters tidied for help (see tidy_params)."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            tidy_params(command, ctx)
        return command

    def get_params(self, ctx: Any) -> list:
        """The root's own options, tidied for help too."""
        tidy_params(self, ctx)
        return super().get_params(ctx)


app = typer.Typer(
    cls=CnnlabGroup,
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
