"""CS 475 HW3's command line: trains, predicts and names its files as the homework says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import digits_arrays

import cnnlab
from cnnlab.checkpoint import load_checkpoint
from cnnlab.compat.cs475 import main


@pytest.fixture
def homework(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The homework's folder: datasets/fruit_{,dev_,test_}images.npy (6 classes, test
    unlabeled), run from its root as the homework's run.sh does."""
    x, y = digits_arrays()
    keep = y < 6
    x = np.kron(x[keep], np.ones((1, 3, 3), dtype=np.uint8))  # 24x24 "drawings"
    y = y[keep].astype(np.uint8)
    d = tmp_path / "datasets"
    d.mkdir()
    np.save(d / "fruit_images.npy", x[:600])
    np.save(d / "fruit_labels.npy", y[:600])
    np.save(d / "fruit_dev_images.npy", x[600:800])
    np.save(d / "fruit_dev_labels.npy", y[600:800])
    np.save(d / "fruit_test_images.npy", x[800:950])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_train_then_predict_as_the_homework_says(homework: Path):
    rc = main(["--model", "convnet", "--mode", "train", "--LR", "0.01", "--bs", "50",
               "--epochs", "30", "--evalEvery", "10"])
    assert rc == 0
    models = os.listdir(homework / "model_files")
    assert len(models) == 1 and re.fullmatch(r"\d{14}_convnet\.pt", models[0])
    stamp = models[0][:14]
    log = (homework / "log_files" / f"{stamp}_convnet.log").read_text().splitlines()
    rows = [r.split(",") for r in log if r and r[0].isdigit()]
    assert [r[0] for r in rows] == ["10", "20", "30"]  # --epochs counts optimization steps
    assert all(0 <= float(r[5]) <= 1 for r in rows)  # dev accuracy every 10 steps
    run_dir = homework / "log_files" / f"{stamp}_convnet"
    assert load_checkpoint(run_dir / "last.pt")["train_state"]["global_step"] == 30
    assert (run_dir / "plots" / "curves_steps.png").is_file()
    cfg = load_checkpoint(homework / "model_files" / models[0])["config"]
    assert (cfg["model"], cfg["lr"], cfg["batch_size"], cfg["steps"]) == \
        ("cs475-convnet", 0.01, 50, 30)

    # the student removes the date prefix; the autograder's predict command, as a program
    (homework / "model_files" / models[0]).rename(homework / "convnet.pt")
    r = subprocess.run([sys.executable, "-m", "cnnlab.compat.cs475", "--model", "convnet",
                        "--mode", "predict", "--weights", "convnet.pt", "--predictionsFile",
                        "convnet_predictions.csv"], capture_output=True, text=True,
                       cwd=homework, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = (homework / "convnet_predictions.csv").read_text().splitlines()
    assert len(lines) == 150 and set(lines) <= {str(k) for k in range(6)}
    expected = cnnlab.load(homework / "convnet.pt").predict(
        np.load(homework / "datasets" / "fruit_test_images.npy"))
    assert [int(v) for v in lines] == expected.tolist()

    # convnet weights under another --model are refused, not silently used
    before = (homework / "convnet_predictions.csv").read_bytes()
    r = subprocess.run([sys.executable, "-m", "cnnlab.compat.cs475", "--model", "densenet",
                        "--mode", "predict", "--weights", "convnet.pt", "--predictionsFile",
                        "convnet_predictions.csv"], capture_output=True, text=True,
                       cwd=homework, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and "'cs475-convnet' model, not 'cs475-densenet'" in \
        r.stderr and "--model" in r.stderr, r.stderr
    assert (homework / "convnet_predictions.csv").read_bytes() == before


def test_missing_arguments_are_one_line_errors(homework: Path, capsys: pytest.CaptureFixture):
    assert main(["--model", "densenet", "--mode", "train", "--LR", "1e-4"]) == 2
    assert capsys.readouterr().err.strip() == "error: --mode train needs --bs, --epochs"
    assert main(["--model", "densenet", "--mode", "predict", "--weights", "x.pt"]) == 2
    assert "needs --predictionsFile" in capsys.readouterr().err
    assert main(["--model", "densenet", "--mode", "train", "--LR", "1e-4", "--bs", "10",
                 "--epochs", "5", "--dataDir", "nowhere"]) == 2
    assert "--dataDir nowhere: no such folder" in capsys.readouterr().err
    assert not (homework / "model_files").exists()


def test_set_passes_cnnlab_settings(homework: Path):
    assert main(["--model", "bestmodel", "--mode", "train", "--LR", "0.003", "--bs", "64",
                 "--epochs", "12", "--evalEvery", "0", "--set", "model=mlp",
                 "--set", "model_args=hidden=32", "--set", "optimizer=sgd"]) == 0
    (pt,) = (homework / "model_files").iterdir()
    assert pt.name.endswith("_bestmodel.pt")
    cfg = load_checkpoint(pt)["config"]
    assert (cfg["model"], cfg["model_args"], cfg["optimizer"]) == ("mlp", {"hidden": 32}, "sgd")
    assert main(["--model", "bestmodel", "--mode", "train", "--LR", "0.003", "--bs", "64",
                 "--epochs", "12", "--set", "optimiser=sgd"]) == 2


@pytest.mark.slow
def test_two_trainings_in_the_same_second_overwrite_nothing(homework: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    import cnnlab.compat.cs475 as cs475

    monkeypatch.setattr(cs475, "stamp", lambda: "20260102030405")  # both runs: one clock tick
    args = ["--model", "convnet", "--mode", "train", "--LR", "0.01", "--bs", "50",
            "--epochs", "3", "--evalEvery", "0"]
    assert main(args) == 0
    first = (homework / "model_files" / "20260102030405_convnet.pt").read_bytes()
    first_log = (homework / "log_files" / "20260102030405_convnet.log").read_text()
    assert main([*args, "--set", "seed=7"]) == 0
    assert sorted(os.listdir(homework / "model_files")) == ["20260102030405-2_convnet.pt",
                                                            "20260102030405_convnet.pt"]
    assert (homework / "model_files" / "20260102030405_convnet.pt").read_bytes() == first
    assert (homework / "log_files" / "20260102030405_convnet.log").read_text() == first_log
    second = load_checkpoint(homework / "model_files" / "20260102030405-2_convnet.pt")
    assert second["config"]["seed"] == 7
    assert (homework / "log_files" / "20260102030405-2_convnet" / "best.pt").is_file()
    assert (homework / "log_files" / "20260102030405-2_convnet.log").is_file()
