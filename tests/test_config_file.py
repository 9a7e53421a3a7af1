"""--config FILE on train and every experiment command, config= in the API (issue 25, step 2).

Any run's config.yaml is a valid input and reproduces a deterministic run; options given with
it win; a key that is no setting is one line, exit 2; a custom model the file names is
imported only when the user names it or trusts the file. CLI cases are real `cnnlab`
processes (clitools.Zygote).
"""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from clitools import assert_one_line_error
from conftest import digits_arrays

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.settings import SettingsError, resolve
from cnnlab.settings_file import read_config

# Every command that trains: the file's settings under the options of each.
COMMANDS = {"train": ["train"], "sweep": ["sweep", "--lr", "0.01,0.02"], "cv": ["cv"],
            "seeds": ["seeds"], "lr-find": ["lr-find"],
            "search": ["search", "--lr", "1e-3:1e-1:log"]}

BUILDER = '''
from pathlib import Path

from torch import nn

Path(__file__).with_name("imported").touch()  # proof that this module's code ran


def build(num_classes, in_channels, image_size, hidden=16):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))
'''


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 of scikit-learn's digits as .npy (hard enough that accuracy is not simply 1)."""
    d = tmp_path_factory.mktemp("cfg") / "dig"
    d.mkdir()
    x, y = digits_arrays(300)
    np.save(d / "dig_images.npy", x[60:])
    np.save(d / "dig_labels.npy", y[60:])
    np.save(d / "dig_test_images.npy", x[:60])
    np.save(d / "dig_test_labels.npy", y[:60])
    return d


def write(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def saved(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


def epochs_logged(run: Path) -> int:
    with open(run / "metrics.csv", newline="") as fh:
        return len(list(csv.DictReader(fh)))


def test_a_run_is_reproduced_from_its_config_yaml(zygote, data: Path, tmp_path: Path) -> None:
    first, again = tmp_path / "first", tmp_path / "again"
    res = zygote.run("train", data, "--epochs", "2", "--batch-size", "16", "--seed", "5",
                     "--augment", "hflip", "--deterministic", "--device", "cpu", "--no-report",
                     "--out", first)
    assert res.returncode == 0, res.stderr
    res = zygote.run("train", "--config", first / "config.yaml", "--out", again)
    assert res.returncode == 0, res.stderr
    a, b = (json.loads((r / "metrics.json").read_text()) for r in (first, again))
    assert a["test"]["n"] == 60 and b["test"]["accuracy"] == a["test"]["accuracy"]
    assert b["test"] == a["test"] and b["val"] == a["val"]  # loss, per class, all of it
    ran, rerun = saved(first), saved(again)
    assert rerun["out"] == str(again)  # its own folder, not the one the file names
    for doc in (ran, rerun):
        doc.pop("out")
        doc.pop("resolved")
    assert rerun == ran


def test_the_file_sets_options_win(zygote, data: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "mine.yaml", {"data": str(data), "epochs": 2, "batch_size": 16,
                                         "lr": 0.01, "seed": 3, "report": False})
    res = zygote.run("train", "--config", cfg, "--out", tmp_path / "two")
    assert res.returncode == 0, res.stderr
    s = saved(tmp_path / "two")
    assert (s["data"], s["epochs"], s["batch_size"], s["lr"], s["seed"]) == (str(data), 2, 16,
                                                                            0.01, 3)
    assert epochs_logged(tmp_path / "two") == 2
    res = zygote.run("train", "--config", cfg, "--epochs", "1", "--batch-size", "8", "--out",
                     tmp_path / "one")
    assert res.returncode == 0, res.stderr
    s = saved(tmp_path / "one")
    assert (s["epochs"], s["batch_size"], s["lr"], s["seed"]) == (1, 8, 0.01, 3)
    assert epochs_logged(tmp_path / "one") == 1


def test_experiments_take_the_file(zygote, data: Path, tmp_path: Path) -> None:
    # a run's whole config.yaml: the settings an experiment has no option for are left out
    run = write(tmp_path / "run.yaml", {**resolve({"data": str(data)}).to_dict(), "epochs": 1,
                                        "batch_size": 32, "log_every": 5, "out": "elsewhere",
                                        "resolved": {"lr": 0.003}})
    res = zygote.run("seeds", "--config", run, "--n", "2", "--out", tmp_path / "seeds")
    assert res.returncode == 0, res.stderr
    members = sorted((tmp_path / "seeds").rglob("config.yaml"))
    assert len(members) == 2
    for m in members:
        s = saved(m.parent)
        assert (s["data"], s["epochs"], s["batch_size"], s["log_every"]) == (str(data), 1, 32, 0)
    res = zygote.run("lr-find", "--config", run, "--steps", "5", "--out", tmp_path / "lr")
    assert res.returncode == 0, res.stderr


def test_unknown_keys_and_bad_files_are_one_line(zygote, tmp_path: Path) -> None:
    typo = write(tmp_path / "typo.yaml", {"epochs": 2, "lrr": 0.1})
    for argv in COMMANDS.values():
        res = zygote.run(*argv, "--config", typo, cwd=tmp_path)
        assert_one_line_error(res, f"{typo}: unknown setting 'lrr'", "did you mean 'lr'")
    assert not (tmp_path / "runs").exists()
    bad = write(tmp_path / "bad.yaml", {"epochs": "many"})
    assert_one_line_error(zygote.run("train", "--config", bad), str(bad), "epochs", "'many'")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    assert_one_line_error(zygote.run("train", "--config", tmp_path / "list.yaml"),
                          "KEY: VALUE")
    assert_one_line_error(zygote.run("train", "--config", tmp_path / "none.yaml"),
                          "no such file")
    assert_one_line_error(zygote.run("train", "--config", typo, "--resume"), "one of them")


def test_a_config_never_chooses_code_to_run(zygote, data: Path, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"  # the zygote's children import from their working folder
    pkg.mkdir()
    (pkg / "tiny.py").write_text(textwrap.dedent(BUILDER))
    cfg = write(tmp_path / "custom.yaml", {"data": str(data), "model": "tiny:build",
                                           "model_args": {"hidden": 8}, "epochs": 1,
                                           "report": False})
    for argv in COMMANDS.values():
        res = zygote.run(*argv, "--config", cfg, cwd=pkg)
        assert_one_line_error(res, "'tiny:build'", "--trust-model-code")
        assert not (pkg / "imported").exists(), argv
    res = zygote.run("train", "--config", cfg, "--trust-model-code", "--out", tmp_path / "t",
                     cwd=pkg)
    assert res.returncode == 0, res.stderr
    assert (pkg / "imported").exists() and saved(tmp_path / "t")["model_args"] == {"hidden": 8}
    # named by the user, the builder still takes from the file only arguments it has
    evil = write(tmp_path / "evil.yaml", {**yaml.safe_load(cfg.read_text()),
                                          "model_args": {"hidden": 8, "evil": 1}})
    res = zygote.run("train", "--config", evil, "--model", "tiny:build", cwd=pkg)
    assert_one_line_error(res, "takes no argument 'evil'")


def test_the_api_takes_config(data: Path, tmp_path: Path) -> None:
    cfg = write(tmp_path / "mine.yaml", {"data": str(data), "epochs": 2, "batch_size": 16,
                                         "report": False})
    run = cnnlab.train(config=cfg, epochs=1, out=str(tmp_path / "one"), verbose=False)
    assert (run.config.epochs, run.config.batch_size, run.config.data) == (1, 16, str(data))
    assert len(run.history) == 1
    typo = write(tmp_path / "typo.yaml", {"epoch": 2})
    with pytest.raises(SettingsError, match="unknown setting 'epoch'.*did you mean 'epochs'"):
        cnnlab.train(config=typo)
    with pytest.raises(ValueError, match="one of them"):
        cnnlab.train(config=cfg, resume=True)


def test_another_recipe_replaces_the_files_recipe_values(tmp_path: Path) -> None:
    plain = resolve({"lr": 0.01}).to_dict()  # what a plain run's config.yaml holds
    cfg = write(tmp_path / "plain.yaml", plain)
    fast = resolve(read_config(cfg, {"recipe": "fast"}))
    assert (fast.schedule, fast.label_smoothing, fast.ema, fast.monitor) == (
        "onecycle", 0.1, 0.99, "last")
    assert fast.lr == 0.01  # chosen in the file: stays
    chosen = write(tmp_path / "step.yaml", {**plain, "schedule": "step"})
    assert resolve(read_config(chosen, {"recipe": "fast"})).schedule == "step"
    assert resolve(read_config(cfg, {})).schedule == "cosine"


def test_another_model_does_not_take_the_files_model_arguments(tmp_path: Path) -> None:
    cfg = write(tmp_path / "cnn.yaml", {"model": "cnn", "model_args": {"width": 8}})
    assert read_config(cfg, {})["model_args"] == {"width": 8}
    assert "model_args" not in read_config(cfg, {"model": "mlp"})
    assert read_config(cfg, {"model": "cnn"})["model_args"] == {"width": 8}
    with pytest.raises(CnnlabError, match="not a plain"):
        read_config(write(tmp_path / "deep.yaml", {"model_args": {"width": {"a": 1}}}), {})
