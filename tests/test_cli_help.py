"""--help tells the truth (#22): every shown default is the real one, commands come in workflow
order, flags take no value, one placeholder style; a bad setting value is one line (exit 2)."""

from __future__ import annotations

import re

import pytest
import typer
from clitools import assert_one_line_error, run_cli
from typer._click import Context
from typer.core import TyperArgument, TyperGroup
from typer.testing import CliRunner

from cnnlab.cli import app
from cnnlab.settings import SETTINGS, SettingsError, resolve

WIDE = {"COLUMNS": "2000", "NO_COLOR": "1", "TERM": "dumb"}  # one table row per line
DEFAULT = re.compile(r"\[default: ([^\]]*)\]")


def commands() -> list[tuple[list[str], object, object]]:
    """(argv path, click command, its context) for the root and every (sub)command."""
    root = typer.main.get_command(app)
    found = []

    def walk(cmd, path: list[str], parent) -> None:  # noqa: ANN001
        ctx = Context(cmd, info_name=path[-1] if path else "cnnlab",
                                        parent=parent)
        found.append((path, cmd, ctx))
        if isinstance(cmd, TyperGroup):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name], ctx)

    walk(root, [], None)
    return found


COMMANDS = commands()


def render(path: list[str]) -> str:
    """`cnnlab PATH --help` as a user sees it (rich panels, markdown rendered)."""
    res = CliRunner().invoke(app, [*path, "--help"], env=WIDE, prog_name="cnnlab")
    assert res.exit_code == 0, res.output
    return res.output


def rows(text: str) -> dict[str, str]:
    """Option or argument name -> the text of its help row(s), joined."""
    out: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.startswith("│"):
            key = None
            continue
        cells = line.strip("│").rstrip()
        indent = len(cells) - len(cells.lstrip())
        if indent <= 5:  # a new row: its name sits in the first column
            key = cells.replace("*", " ").split()[0].split(",")[0]
            out[key] = cells.strip()
        elif key is not None:  # the row's help went on below (e.g. an automatic default)
            out[key] += " " + cells.strip()
    return out


# Commands whose data options default to the trained run's own values, not the settings'.
SAVED = {("evaluate",), ("predict",), ("explain", "gradcam"), ("explain", "failures"),
         ("explain", "robustness")}


def real_default(param, path: list[str]) -> tuple[str | None, str]:  # noqa: ANN001
    """(the default as --help must show it, or None when the help describes it in words;
    the raw help text a described default must come from)."""
    s = SETTINGS.get(param.name)
    raw = param.help or ""
    if s is not None and param.default is None and raw.startswith(s.help.split(" [")[0]):
        # an option made from the settings model
        if tuple(path) in SAVED:
            return "the run's own", raw
        value, raw = s.default, s.help
    else:
        value = param.default
    if value is None or value == [] or value == {} or value == ():
        return None, raw
    if isinstance(value, bool):
        return ("on" if value else "off"), raw
    return str(value), raw


COMMAND_PARAMS = [(tuple(path), cmd.get_params(ctx)) for path, cmd, ctx in COMMANDS]


@pytest.mark.parametrize("path", [p for p, _, _ in COMMANDS], ids=lambda p: " ".join(p) or "-")
def test_every_default_shown_is_the_real_one(path: list[str]) -> None:
    text = render(path)
    shown = rows(text)
    params = dict(COMMAND_PARAMS)[tuple(path)]
    checked = 0
    for param in params:
        if getattr(param, "hidden", False):
            continue
        names = [o for o in param.opts if o.startswith("--")] or [param.metavar or param.name]
        row = shown.get(names[0])
        assert row is not None, (names[0], list(shown))
        defaults = DEFAULT.findall(row)
        assert len(defaults) <= 1, f"cnnlab {' '.join(path)} {names[0]}: two defaults: {row}"
        if not defaults:
            continue
        want, raw = real_default(param, path)
        got = defaults[0].strip()
        if want is not None:  # the value itself, perhaps explained: "auto = imagenet with ..."
            assert got == want or got.startswith(f"{want} = "), \
                f"cnnlab {' '.join(path)} {names[0]}: shows {got!r}, is {want!r}"
        else:  # described in words: exactly as written (the markdown renderer ate nothing)
            assert f"[default: {got}]" in raw, f"cnnlab {' '.join(path)} {names[0]}: {got!r}"
        checked += 1
    if path in (["train"], ["predict"], ["search"]):
        assert checked > 5


def test_defaults_that_were_wrong() -> None:
    search = rows(render(["search"]))
    assert "[default: runs/search-DATA-MODEL]" in search["--out"]
    assert "study.db" in search["--storage"] and "sqlite:////" not in search["--storage"]
    predict = rows(render(["predict"]))
    assert predict["--image-size"].count("[default:") == 1
    assert "[default: predictions.csv]" in predict["--out"]
    assert "[default: the test split of the data it was trained on]" in predict["PATH"]


def test_commands_are_listed_in_workflow_order() -> None:
    text = render([])
    panel = text[text.index("─ Commands ─"):]
    listed = [line.strip("│ ").split()[0] for line in panel.splitlines()[1:]
              if line.startswith("│")]
    assert listed == ["train", "evaluate", "predict", "explain", "report", "doctor", "sweep",
                      "cv", "seeds", "search", "compare", "lr-find", "transfer", "augment",
                      "export", "data", "inspect", "models"]


def _placeholder_ok(metavar: str) -> bool:
    """N, PATH, KEY=VALUE, CKPT|RUN or a list of the literal choices such as auto|cpu."""
    return "<" not in metavar and (metavar == metavar.upper() or "|" in metavar)


@pytest.mark.parametrize("path", [p for p, _, _ in COMMANDS], ids=lambda p: " ".join(p) or "-")
def test_flags_take_no_value_and_placeholders_share_one_style(path: list[str]) -> None:
    text = render(path)
    assert not re.search(r"<(bool|int|float|str|text|path|file|list|dict)\b", text, re.I), text
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert not re.search(r"[\[{][a-z_]+[\]}]", usage), usage  # arguments: [PATH], not [path]
    _, cmd, ctx = next(c for c in COMMANDS if c[0] == path)
    for param in cmd.get_params(ctx):
        if getattr(param, "is_flag", False):
            assert not param.display_type_rich(ctx), param.opts
        elif isinstance(param, TyperArgument):
            assert _placeholder_ok(param.metavar or param.name), param.name
        else:
            assert _placeholder_ok(param.display_type_rich(ctx) or ""), (param.opts,
                                                                         param.metavar)


@pytest.mark.parametrize(("args", "needles"), [
    (("--lr", "1e-3x"), ("--lr", "'1e-3x'")),  # a float setting
    (("--batch-size", "abc"), ("--batch-size", "'abc'")),  # an int setting
    (("--channels", "three"), ("--channels", "'three'")),  # a choice of numbers (1 or 3)
    (("--optimizer", "adamx"), ("--optimizer", "'adamx'", "did you mean")),  # a choice
])
def test_a_bad_setting_value_is_one_line_with_the_value(args: tuple, needles: tuple) -> None:
    res = run_cli("train", *args, "--epochs", "1", timeout=120)
    line = assert_one_line_error(res, *needles)
    with pytest.raises(SettingsError) as api:  # what cnnlab.train(...) says of the same value
        resolve({args[0][2:].replace("-", "_"): args[1]})
    assert line == f"error: {api.value}"
