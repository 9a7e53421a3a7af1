"""Start-up: help, --version and option errors answer without importing torch (#23).

Each check runs a real `python -X importtime -m cnnlab ...` process and reads the modules it
imported from the interpreter's own import log on stderr.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from clitools import cli_env

# What a help text or an option error must never wait for.
HEAVY = ("torch", "torchvision", "matplotlib", "sklearn", "scipy", "optuna", "mlflow", "PIL",
         "pandas", "onnx", "onnxruntime", "openvino", "tensorboard")


def imported(stderr: str) -> set[str]:
    """Top-level names of the modules a `python -X importtime` process imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":  # the log's header line
                names.add(name.split(".")[0])
    return names


def run_importtime(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """`cnnlab ARGS` (or `python -c CODE`) with the import log on stderr."""
    cmd = [sys.executable, "-X", "importtime", *(["-c", code] if code else ["-m", "cnnlab",
                                                                            *args])]
    return subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("args", "rc", "says"), [
    (("--help",), 0, "Commands"),
    (("train", "--help"), 0, "--batch-size"),
    (("--version",), 0, "cnnlab "),
    (("train", "--no-such-option"), 2, "error: no such option: --no-such-option"),
    (("train", "--lr", "1e-3x"), 2, "--lr '1e-3x'"),
])
def test_help_version_and_option_errors_import_no_torch(args: tuple, rc: int, says: str) -> None:
    res = run_importtime(*args)
    assert res.returncode == rc, res.stderr[-2000:]
    assert says in res.stdout + res.stderr
    mods = imported(res.stderr)
    assert "cnnlab" in mods and "typer" in mods, "the import log was not read"
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


@pytest.mark.slow  # the second half imports torch in a fresh process
def test_cli_imports_light_and_the_api_names_still_mean_the_functions() -> None:
    # `import cnnlab.cli` loads no torch; cnnlab.train / cnnlab.data / cnnlab.load are the API
    # functions when first used, even after their subpackages were imported (which binds a
    # subpackage on its parent module).
    code = """
import sys
import cnnlab.cli
assert "torch" not in sys.modules, "import cnnlab.cli imported torch"
import cnnlab, cnnlab.settings, cnnlab.choices, cnnlab.data.decode
from cnnlab import api
assert cnnlab.train is api.train and cnnlab.data is api.data and cnnlab.load is api.load
assert "torch" in sys.modules  # the API itself did load it, when it was asked for
assert cnnlab.train.__module__ == "cnnlab.api" and callable(cnnlab.data)
assert "train" in dir(cnnlab) and "ImageClassifier" in dir(cnnlab)
print("ok")
"""
    res = run_importtime(code=code)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-3000:]


def test_choice_lists_agree_with_the_registries() -> None:
    # settings.py takes its allowed values from cnnlab/choices.py; the code lives in the
    # registries, which must offer exactly those names.
    from cnnlab import choices, device
    from cnnlab.data import decode
    from cnnlab.data.sources import registry
    from cnnlab.train import loggers, optim, sampling

    assert choices.FORMATS == registry.format_names()
    assert choices.RESIZE_MODES == decode.RESIZE_MODES
    assert choices.PRECISIONS == device.PRECISIONS
    assert choices.OPTIMIZER_LRS == {k: v.default_lr for k, v in optim.OPTIMIZERS.items()}
    assert choices.SCHEDULES == tuple(optim.SCHEDULES)
    assert choices.SAMPLERS == tuple(sampling.SAMPLERS)
    assert choices.LOGGERS == tuple(loggers.LOGGERS)

    from cnnlab.settings import SETTINGS, TrainConfig

    assert SETTINGS["optimizer"].choices == tuple(optim.OPTIMIZERS)
    assert TrainConfig(optimizer="sgd").resolved_lr() == optim.OPTIMIZERS["sgd"].default_lr
