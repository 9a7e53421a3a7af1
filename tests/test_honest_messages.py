"""Messages that tell the whole truth (issue #22 items 5, 8, 10): no class list cut without
saying so, predict without labels, the value a refused resume option really ran with, the
user's own builder bug, no widget warnings in notebooks, a note on every misread float batch,
a robustness noise that predict reproduces, and the normalization actually applied."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import assert_one_line_error, shared_zygote
from conftest import digits_arrays, write_image_folder

import cnnlab
from cnnlab.checkpoint import load_checkpoint
from cnnlab.errors import CnnlabError, name_list
from cnnlab.evaluate.predictor import Predictor
from cnnlab.models.record import rebuild
from cnnlab.models.registry import build_model

TINY = ("--model", "cnn", "--model-arg", "width=4", "--epochs", "1", "--no-report")


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a 10-class cnn trained 3 epochs on the built-in digits (about 2 s)."""
    out = tmp_path_factory.mktemp("honest") / "run"
    cnnlab.train(None, model="cnn", epochs=3, out=str(out), verbose=False, report=False,
                 extra={"plots": False})
    return out / "best.pt"


@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """`cnnlab train --normalize 0.5,0.5` (lr left at its default): (result, run folder)."""
    run_dir = tmp_path_factory.mktemp("honest") / "norm"
    res = shared_zygote().run("train", *TINY, "--normalize", "0.5,0.5", "--out", run_dir)
    assert res.returncode == 0, res.stderr
    return res, run_dir


# ---- 5a: class lists are never cut silently ---------------------------------------------

def test_name_list_shows_all_up_to_twenty_then_says_how_many_more():
    assert name_list(str(i) for i in range(10)) == "0, 1, 2, 3, 4, 5, 6, 7, 8, 9"
    long = name_list([f"c{i}" for i in range(25)])
    assert long.endswith("c19 ... and 5 more") and "c20" not in long


def test_class_mismatch_names_every_class_of_the_model(digits_model: Path, tmp_path: Path):
    folder = write_image_folder(tmp_path / "abc", n_per_class=3)
    res = shared_zygote().run("evaluate", "-w", digits_model, folder)
    # The 10-class model's classes in full (it used to stop at "0, 1, 2, 3, 4, 5").
    assert_one_line_error(res, "differ from the model's (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)",
                          "(class0, class1, class2)")


# ---- 5b: predict needs no labels ---------------------------------------------------------

def test_predict_reads_sub_folders_that_are_not_the_models_classes(digits_model: Path,
                                                                  tmp_path: Path):
    folder = write_image_folder(tmp_path / "abc", n_per_class=4)  # class0..class2, 12 images
    out = tmp_path / "p.csv"
    res = shared_zygote().run("predict", "-w", digits_model, folder, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "labels unknown (-1)" in res.stderr and "wrote 12 predictions" in res.stderr
    rows = list(csv.DictReader(open(out)))
    assert sorted(r["id"] for r in rows) == sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*.png"))
    assert {r["class"] for r in rows} <= {str(i) for i in range(10)}


def test_predict_reads_one_unsorted_folder_and_loose_images(digits_model: Path, tmp_path: Path):
    from PIL import Image

    folder = tmp_path / "inbox"
    x, _ = digits_arrays(5)
    (folder / "unsorted").mkdir(parents=True)
    for i, img in enumerate(x):  # 3 in one sub-folder (no class folders), 2 loose beside it
        where = folder / "unsorted" if i < 3 else folder
        Image.fromarray(img).save(where / f"d{i}.png")
    out = tmp_path / "p.csv"
    res = shared_zygote().run("predict", "-w", digits_model, folder, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "read every image under it, unlabeled" in res.stderr
    ids = sorted(r["id"] for r in csv.DictReader(open(out)))
    assert ids == ["d3.png", "d4.png", "unsorted/d0.png", "unsorted/d1.png", "unsorted/d2.png"]


# ---- 5c: a refused resume option names the value that ran ---------------------------------

def test_refused_resume_option_names_the_default_that_ran(normalized_run):
    _, run_dir = normalized_run
    import yaml

    ran = yaml.safe_load((run_dir / "config.yaml").read_text())["resolved"]["lr"]
    res = shared_zygote().run("train", "--out", run_dir, "--resume", "--lr", "0.5")
    line = assert_one_line_error(res, f"--lr 0.5 differs from the run's {ran!r} (its default)")
    assert "None" not in line


# ---- 5d: one `error:` style ----------------------------------------------------------------

def test_doctor_missing_dependency_is_a_lowercase_error_line(tmp_path: Path):
    # A cleanlab that cannot be imported, found first on sys.path ('' = the child's cwd).
    (tmp_path / "cleanlab").mkdir()
    (tmp_path / "cleanlab" / "__init__.py").write_text("raise ImportError('no cleanlab')\n")
    res = shared_zygote().run("doctor", "--out", tmp_path / "doc", cwd=tmp_path)
    line = assert_one_line_error(res, "cleanlab")
    assert line.startswith("error: ") and not (tmp_path / "doc" / "doctor.json").exists()


# ---- 5e: a custom builder's own bug is shown as the user's ----------------------------------

BUGGY = '''"""A model builder with a bug of its own."""
from torch import nn


def build(num_classes, in_channels, image_size, width=8):
    """Divides by zero on line 7."""
    scale = width / 0
    return nn.Linear(scale, num_classes)
'''


def test_custom_builder_exception_names_its_type_message_and_line(tmp_path: Path):
    (tmp_path / "zdiv_builder.py").write_text(BUGGY)
    res = shared_zygote().run("train", "--model", "zdiv_builder:build", "--epochs", "1",
                              "--no-report", "--out", tmp_path / "run", cwd=tmp_path)
    line = assert_one_line_error(
        res, "your model builder zdiv_builder:build raised ZeroDivisionError: division by "
             "zero (zdiv_builder.py:7)", after_progress=True)
    assert "--model-arg" not in line


def test_builder_argument_errors_keep_the_model_arg_hint(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "zdiv_builder2.py").write_text(BUGGY)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CnnlabError, match=r"check the --model-arg values"):
        build_model("cnn", 10, 1, 8, width=-4)  # a registered model: the arguments' fault
    with pytest.raises(CnnlabError, match=r"bad arguments \{'depth': 3\}"):
        build_model("zdiv_builder2:build", 10, 1, 8, depth=3)  # never reached the builder


# ---- 8: notebooks --------------------------------------------------------------------------

def test_notebook_training_shows_no_widget_warning_and_load_takes_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import time

    from cnnlab.console import busy, console

    # Jupyter as rich detects it (get_ipython() is a ZMQInteractiveShell), no ipywidgets here.
    monkeypatch.setattr(console, "is_jupyter", True)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with busy("a step as long as the report's"):  # a spinner would redraw (and warn) here
            time.sleep(0.3)
        run = cnnlab.train(None, model="cnn", model_args={"width": 4}, epochs=1, report=False,
                           out=str(tmp_path / "nb"), extra={"plots": False})
    assert not [w for w in seen if "ipywidgets" in str(w.message)], \
        [str(w.message) for w in seen]
    model = cnnlab.load(run)  # the RunResult itself, as a notebook has it
    x, _ = digits_arrays(20)
    assert model.path == run.run_dir / "best.pt"
    np.testing.assert_array_equal(model.predict(x), run.load().predict(x))


# ---- 10a: every misread float batch gets a note ----------------------------------------------

def _untrained(config: dict | None = None) -> Predictor:
    torch.manual_seed(0)
    arch = {"name": "cnn", "args": {"width": 4}, "num_classes": 10, "in_channels": 1,
            "image_size": 8}
    return Predictor(rebuild(arch), arch, [str(i) for i in range(10)], config or {})


def test_a_float_batch_on_another_scale_is_noted_every_time():
    model = _untrained()  # floats read on 0..1 (the default)
    x8, _ = digits_arrays(10)
    x01 = x8.astype(np.float32) / 255.0
    noisy = x01 + np.random.default_rng(0).normal(0, 0.1, x01.shape).astype(np.float32)
    x255 = x8.astype(np.float32)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's own: a repeated text at one line shows once
        model.predict(noisy)
        model.predict(x255)
        model.predict(x255)  # the same batch again: noted again
        model.predict(x01)  # fits 0..1: nothing to say
    texts = [str(w.message) for w in seen]
    assert len(texts) == 3, texts
    assert "outside the value range 0..1 were clipped" in texts[0]
    for t in texts[1:]:
        assert "this batch spans 0..255" in t and "pass value_range=(0, 255)" in t
    assert all(w.filename == __file__ for w in seen)  # points at the caller's line
    # A model trained on 0..255 floats: a 0..1 batch is not clipped, but still misread.
    recorded = _untrained({"value_range": [0.0, 255.0]})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        recorded.predict(x01)
        recorded.predict(x01, value_range=(0, 1))  # the caller said so: nothing to note
    assert len(seen) == 1 and "read on 0..255 (the scale of the model's training data" in \
        str(seen[0].message) and "pass value_range=(0, 1)" in str(seen[0].message)


# ---- 10b: robustness noise is defined, and predict reproduces it --------------------------

def test_robustness_noise_matches_predict_on_the_same_noisy_images(digits_model: Path,
                                                                   tmp_path: Path):
    res = shared_zygote().run("explain", "robustness", "-w", digits_model, "--n", "4",
                              "--seed", "3", "--out", tmp_path / "r.png")
    assert res.returncode == 0, res.stderr
    said = " ".join(res.stderr.split())
    assert "x + z * (F * (max(x) - min(x)))" in said
    assert "numpy.random.default_rng(3).standard_normal" in said
    assert "clipped to 0..1 and rounded to 8 bits" in said
    # right answers per row (the CSV keeps 6 digits of the accuracy: count, not compare floats)
    table = {r["perturbation"]: round(float(r["accuracy"]) * int(r["n"]))
             for r in csv.DictReader(open(tmp_path / "r.csv"))}
    # The documented noise, added by hand, then plain predict.
    model = cnnlab.load(digits_model)
    data, _ = model.split_of(None, None)
    x = data.images.numpy().astype(np.float64) / 255.0
    z = np.random.default_rng(3).standard_normal(x.shape)
    y = data.labels.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the noisy values are clipped, as documented
        for f in (0.05, 0.1, 0.2):
            r = x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3))
            noisy = x + z * (f * r)[:, None, None, None]
            assert int((model.predict(noisy) == y).sum()) == table[f"noise {f:g}"]
    assert table["clean"] == int((model.predict(data.images.numpy()) == y).sum())


# ---- 10c: the normalization actually applied is printed ----------------------------------

def test_train_prints_the_normalization_it_applies(normalized_run):
    res, run_dir = normalized_run
    assert "normalize: mean [0.5000] std [0.5000] (0..1; --normalize 0.5,0.5)" in res.stderr
    state = load_checkpoint(run_dir / "best.pt")["model_state"]
    assert state["mean"].flatten().tolist() == [0.5] and state["std"].flatten().tolist() == [0.5]
