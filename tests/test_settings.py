"""One settings model behind every entry point: the same checks, defaults and options everywhere,
honest resume, resolved values recorded, lr-find on train's own step, custom models."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import typer.main
import yaml
from clitools import assert_one_line_error, run_cli
from conftest import digits_arrays, pattern_images

import cnnlab
from cnnlab.cli.app import app
from cnnlab.estimator import ImageClassifier
from cnnlab.settings import SETTINGS, SettingsError, in_groups
from cnnlab.train.callbacks import Callback

BAD = [  # (python keyword, value, CLI flag, CLI value, words the one-line message holds)
    ("schedule", "cosin", "--schedule", "cosin", "--schedule 'cosin': choose"),
    ("sampler", "balance", "--sampler", "balance", "--sampler 'balance': choose"),
    ("resize", "strech", "--resize", "strech", "--resize 'strech': choose"),
    ("lr", float("inf"), "--lr", "inf", "--lr inf: must be a finite number"),
    ("batch_size", 0, "--batch-size", "0", "--batch-size 0: must be >= 1"),
    ("epochs", 0, "--epochs", "0", "--epochs 0: must be >= 1"),
    ("optimizer", "adamx", "--optimizer", "adamx", "--optimizer 'adamx': choose"),
]


@pytest.mark.parametrize("key,value,flag,text,message", BAD, ids=[b[0] for b in BAD])
def test_invalid_value_same_line_from_cli_api_and_estimator(tmp_path: Path, key: str,
                                                             value: object, flag: str,
                                                             text: str, message: str) -> None:
    out = tmp_path / "run"
    res = run_cli("train", flag, text, "--out", out, cwd=tmp_path)
    line = assert_one_line_error(res, message)
    with pytest.raises(SettingsError) as api:
        cnnlab.train(**{key: value}, out=str(out), verbose=False)
    assert f"error: {api.value}" == line
    x, y = digits_arrays(60)
    with pytest.raises(ValueError) as est:
        ImageClassifier(**{key: value}, out=str(out)).fit(x, y)
    assert str(est.value) == str(api.value)
    assert not out.exists() and not (tmp_path / "runs").exists()  # nothing written


def test_unknown_keys_are_refused_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting 'schedul' .did you mean 'schedule'"):
        cnnlab.train(schedul="cosine", out=str(tmp_path / "r"), verbose=False)
    with pytest.raises(TypeError, match="unexpected keyword argument 'schedul'"):
        ImageClassifier(schedul="cosine")
    assert not (tmp_path / "r").exists()


def test_combinations_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    res = run_cli("train", "--freeze", "all", "--out", tmp_path / "r")
    assert_one_line_error(res, "--freeze all without --pretrained")
    assert not (tmp_path / "r").exists()


def _command_options(name: str) -> dict[str, str]:
    group = typer.main.get_command(app)
    cmd = group.commands[name]
    return {p.name: (p.help or "") for p in cmd.params}


def _default_part(help_text: str) -> str:
    help_text = help_text.replace(" Comma-separated values are swept.", "")
    help_text = help_text.replace(" Searched: LO:HI[:log] (numbers) or V1,V2,...", "")
    return help_text[help_text.find("[default:"):] if "[default:" in help_text else ""


@pytest.mark.parametrize("command,skipped", [
    ("sweep", ()), ("cv", ()), ("seeds", ()), ("search", ()),
    ("lr-find", ("epochs", "schedule", "patience")),
    ("transfer", ("freeze", "init_from", "pretrained", "weights_file")),
])
def test_experiments_offer_trains_options_with_the_same_defaults(command: str,
                                                                 skipped: tuple) -> None:
    train = _command_options("train")
    other = _command_options(command)
    for s in in_groups("data", "model", "optimization", "augmentation", "hardware"):
        if s.name in skipped:
            assert s.name not in other
            continue
        assert s.name in other, f"{command} lacks {s.flag}"
        assert _default_part(other[s.name]) == _default_part(train[s.name]), s.name


@pytest.mark.parametrize("command", ["evaluate", "predict", "inspect.data", "explain.gradcam"])
def test_reading_commands_take_every_data_option(command: str) -> None:
    group = typer.main.get_command(app)
    for part in command.split("."):
        group = group.commands[part]
    names = {p.name for p in group.params}
    for s in in_groups("data"):
        assert s.name in names, f"{command} lacks {s.flag}"


def _csv_with_image_dir(root: Path) -> tuple[Path, Path]:
    """An EECS 445-style CSV in one folder, its images in another."""
    images = root / "pictures"
    images.mkdir(parents=True)
    index = root / "index" / "labels.csv"
    index.parent.mkdir()
    x, y = pattern_images(10, size=16, classes=2, seed=1)
    from PIL import Image

    with open(index, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "semantic_label", "numeric_label", "partition"])
        for i, (img, lab) in enumerate(zip(x, y, strict=True)):
            name = f"im{i:03d}.png"
            Image.fromarray(img).save(images / name)
            part = "train" if i % 5 < 3 else "val" if i % 5 == 3 else "test"
            w.writerow([name, f"c{lab}", int(lab), part])
    return index, images


@pytest.mark.slow
def test_csv_run_with_image_dir_re_evaluates_and_explains(tmp_path: Path) -> None:
    index, images = _csv_with_image_dir(tmp_path)
    run = tmp_path / "run"
    res = run_cli("train", index, "--image-dir", images, "--epochs", "1", "--model", "mlp",
                  "--out", run, "--no-report", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = run_cli("evaluate", "--weights", run, "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert '"test"' in res.stdout
    res = run_cli("report", run, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "could not reload" not in (run / "report.html").read_text()


def test_config_records_what_was_used_next_to_what_was_asked(tmp_path: Path) -> None:
    r = cnnlab.train(model="mlp", epochs=1, out=str(tmp_path / "r"), report=False,
                     verbose=False)
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg["lr"] is None and cfg["device"] == "auto"  # asked
    used = cfg["resolved"]
    assert used["lr"] == pytest.approx(3e-3) and used["device"] == "cpu"
    assert used["precision"] in ("32", "bf16") and used["num_threads"] >= 1
    assert r.metrics["resolved"] == used
    assert r.load().config["lr"] is None


@pytest.mark.slow
def test_resume_refuses_a_conflicting_option_and_records_allowed_changes(tmp_path: Path) -> None:
    out = tmp_path / "r"
    cnnlab.train(model="mlp", epochs=2, out=str(out), report=False, verbose=False)
    for flag, value, name in (("--lr", "0.5", "--lr"), ("--model", "cnn", "--model"),
                              ("--batch-size", "8", "--batch-size"),
                              ("--optimizer", "sgd", "--optimizer")):
        res = run_cli("train", "--out", out, "--resume", flag, value, "--epochs", "3")
        assert_one_line_error(res, f"--resume: {name}")
    before = (out / "config.yaml").read_text()
    with pytest.raises(SettingsError, match="--resume: PATH"):
        cnnlab.train(str(tmp_path), out=str(out), resume=True, epochs=3, verbose=False)
    assert (out / "config.yaml").read_text() == before  # a refused resume changes nothing
    r = cnnlab.train(out=str(out), resume=True, epochs=3, verbose=False)
    assert r.metrics["epochs_run"] == 3 and len(r.history) == 3
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["epochs"] == 2  # what first ran is never overwritten
    assert cfg["resumed"][0]["at_epoch"] == 2 and cfg["resumed"][0]["changed"] == \
        {"epochs": [2, 3]}
    assert r.config.model == "mlp"  # the saved settings, not the defaults


def test_lr_find_at_a_fixed_rate_reproduces_trains_first_losses(tmp_path: Path) -> None:
    from cnnlab.experiments.lrfind import lr_find
    from cnnlab.settings import resolve

    x, y = digits_arrays(300)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x, y_train=y)
    common = dict(model="cnn", model_args={"width": 4}, batch_size=32, seed=3, lr=0.01,
                  optimizer="sgd", class_weights="auto", clip_grad=0.5, precision="32")
    cnnlab.train(str(data), epochs=1, schedule="none", log_every=1, out=str(tmp_path / "t"),
                 report=False, verbose=False, **common)
    steps = list(csv.DictReader(open(tmp_path / "t" / "steps.csv")))
    cfg = resolve({**common, "data": str(data), "epochs": 1, "schedule": "none"})
    res = lr_find(cfg, out=tmp_path / "lf", start_lr=0.01, end_lr=0.01, steps=6, verbose=False)
    train_losses = [float(r["loss"]) for r in steps[:6]]
    assert res.raw_losses == pytest.approx(train_losses, rel=1e-5)
    assert len(set(np.round(train_losses, 4))) > 1  # the losses move: a real comparison


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, trainer) -> None:  # noqa: ANN001
        self.events.append("fit_start")

    def on_epoch_start(self, trainer) -> None:  # noqa: ANN001
        self.events.append("epoch_start")

    def on_step_end(self, trainer, loss: float) -> None:  # noqa: ANN001
        assert np.isfinite(loss)
        self.events.append("step")

    def on_epoch_end(self, trainer, row: dict) -> None:  # noqa: ANN001
        self.events.append(f"epoch_end {row['epoch']}")

    def on_fit_end(self, trainer) -> None:  # noqa: ANN001
        self.events.append("fit_end")


def test_callbacks_receive_the_named_events_in_order(tmp_path: Path) -> None:
    rec = Recorder()
    r = cnnlab.train(model="mlp", epochs=2, batch_size=512, out=str(tmp_path / "r"),
                     report=False, verbose=False, callbacks=[rec])
    per_epoch = -(-r.metrics["train"]["n"] // 512)
    assert rec.events == ["fit_start", *(["epoch_start", *["step"] * per_epoch, "epoch_end 1"]),
                          "epoch_start", *["step"] * per_epoch, "epoch_end 2", "fit_end"]


CUSTOM = '''
from torch import nn


def build(num_classes, in_channels, image_size, hidden=16):
    """A tiny custom MLP."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))
'''


@pytest.mark.slow
def test_custom_model_trains_and_reloads_everywhere(tmp_path: Path) -> None:
    pkg = tmp_path / "mymodels"
    pkg.mkdir()
    (pkg / "tiny.py").write_text(textwrap.dedent(CUSTOM))
    env = {"PYTHONPATH": os.pathsep.join([str(pkg), os.environ.get("PYTHONPATH", "")])}
    run = tmp_path / "run"
    res = run_cli("train", "--model", "tiny:build", "--model-arg", "hidden=8", "--epochs", "1",
                  "--out", run, "--no-report", cwd=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    # a custom model's checkpoint loads where the user names its builder again
    for args in (("evaluate", "--weights", run), ("predict", "--weights", run, "--out",
                                                   tmp_path / "p.csv"),
                 ("export", "--weights", run / "best.pt", "--format", "torchscript", "--out",
                  tmp_path / "m.pt")):
        res = run_cli(*args, "--model", "tiny:build", cwd=tmp_path, **env)
        assert res.returncode == 0, (args, res.stderr)
    code = (f"import cnnlab; p = cnnlab.load({str(run)!r}, model='tiny:build'); "
            "print(p.module.net[1].out_features)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, timeout=120)
    assert out.stdout.strip() == "8", out.stderr
    res = run_cli("evaluate", "--weights", run, cwd=tmp_path, **env)  # not named: refused
    assert_one_line_error(res, "'tiny:build'", "--trust-model-code")
    res = run_cli("evaluate", "--weights", run, "--trust-model-code", cwd=tmp_path, **env)
    assert res.returncode == 0, res.stderr
    res = run_cli("evaluate", "--weights", run, "--model", "tiny:build",
                  cwd=tmp_path)  # module not importable here
    assert_one_line_error(res, "cannot import 'tiny'")


def test_estimator_has_trains_parameters_and_validates_in_fit() -> None:
    params = ImageClassifier().get_params()
    for name in ("pretrained", "freeze", "class_weights", "sampler", "augment", "clip_grad",
                 "schedule", "model_args", "image_shape", "out", "verbose"):
        assert name in params
    for name, s in SETTINGS.items():
        if name in params and name != "val_split" and not isinstance(s.default, (dict, list)):
            assert params[name] == s.default, name
    x, y = digits_arrays(60)
    with pytest.raises(ValueError, match="--freeze all without --pretrained"):
        ImageClassifier(freeze="all").fit(x, y)
    clf = ImageClassifier(model="mlp", epochs=1, sampler="balanced", class_weights="auto")
    clf.fit(x, y)
    assert clf.score(x, y) > 0.3
    with pytest.raises(ValueError, match="X has 65 features"):
        clf.predict(np.zeros((2, 65)))


@pytest.mark.slow
def test_digits_take_image_size_and_bad_positive_class_is_refused(tmp_path: Path) -> None:
    r = cnnlab.train(model="mlp", epochs=1, image_size=16, out=str(tmp_path / "r"),
                     report=False, verbose=False)
    assert r.load().image_size == 16
    res = run_cli("train", "--positive-class", "zebra", "--epochs", "1", "--out",
                  tmp_path / "z")
    assert_one_line_error(res, "--positive-class 'zebra': not a class")
    res = run_cli("train", "--positive-class", "3", "--epochs", "1", "--out", tmp_path / "z")
    assert_one_line_error(res, "applies to 2-class data")
    assert not (tmp_path / "z").exists()


@pytest.mark.slow
def test_resume_of_a_run_killed_before_its_first_checkpoint_starts_it_again(tmp_path: Path
                                                                            ) -> None:
    out = tmp_path / "r"
    cnnlab.train(model="mlp", epochs=1, out=str(out), report=False, verbose=False)
    for p in list(out.glob("*.pt")) + list(out.glob("metrics.*")):
        p.unlink()  # what a kill during the first epoch leaves: config.yaml only
    res = run_cli("train", "--out", out, "--resume", "--no-report")
    assert res.returncode == 0, res.stderr
    assert "no checkpoint was saved before it stopped" in res.stderr + res.stdout
    assert (out / "metrics.json").is_file() and not (tmp_path / "r-2").exists()
