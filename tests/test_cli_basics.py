"""What a newcomer types first: --version, `models | grep`, completion, unambiguous short flags."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import cnnlab


@pytest.mark.slow
def test_version_and_models_table_on_a_pipe() -> None:
    # One shell, two real processes: the table must reach grep through a pipe, not the terminal.
    py = f'"{sys.executable}" -m cnnlab'
    res = subprocess.run(f"{py} --version && {py} models | grep resnet", shell=True,
                         capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0] == f"cnnlab {cnnlab.__version__}"
    rows = lines[1:]
    assert any("resnet18 " in r and "ResNet-18" in r for r in rows), rows
    assert rows and all("resnet" in r for r in rows)  # each model is one whole line


@pytest.mark.slow
def test_shell_completion_completes_commands() -> None:
    env = {**os.environ, "_CNNLAB_COMPLETE": "complete_bash", "COMP_WORDS": "cnnlab tra",
           "COMP_CWORD": "1"}
    res = subprocess.run([sys.executable, "-m", "cnnlab"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert set(res.stdout.split()) == {"train", "transfer"}


def _walk(cmd, path: str = "cnnlab"):  # noqa: ANN001, ANN202
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _walk(sub, f"{path} {name}")


def test_no_short_flag_has_two_meanings() -> None:
    import typer

    from cnnlab.cli import app

    meaning: dict[str, set[str]] = {}
    for _, cmd in _walk(typer.main.get_command(app)):
        for p in cmd.params:
            opts = [o for o in p.opts + p.secondary_opts if o.startswith("--")]
            for short in (o for o in p.opts if len(o) == 2 and o[0] == "-"):
                meaning.setdefault(short, set()).add(opts[0] if opts else p.name)
    clashes = {k: v for k, v in meaning.items() if len(v) > 1}
    assert not clashes, clashes
    assert meaning["-k"] == {"--folds"}


@pytest.mark.parametrize(("args", "says"), [
    (("train", "--epochz", "3"), "error: no such option: --epochz (did you mean --epochs"),
    (("trian",), "error: no such command 'trian'"),
    (("train", "a", "b"), "error: got unexpected extra argument(s) (b)"),
    (("export",), "error: missing option '--weights'"),
])
def test_a_usage_error_is_one_line_that_says_where_the_help_is(cli, args, says) -> None:
    code, out, err = cli(*args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(says), err
    assert err.rstrip().endswith("-h')") and "Usage:" not in err
