"""Training end to end: run folder contents, metrics, resume, checkpoints, predictions."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import run_cli

import cnnlab
from cnnlab.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.data import load_data
from cnnlab.errors import CheckpointError
from cnnlab.settings import TrainConfig
from cnnlab.train.trainer import Trainer

pytestmark = pytest.mark.slow  # full training runs: `make test` only

SMALL = {"model_args": {"width": 8}, "batch_size": 64, "report": False}
METRIC_KEYS = {"accuracy", "loss", "per_class_accuracy", "precision", "recall", "f1", "auroc",
               "confusion_matrix"}


def test_train_digits_writes_complete_run_folder(tmp_path: Path):
    run = cnnlab.train(epochs=3, out=str(tmp_path / "run"), verbose=False, **SMALL)
    d = run.run_dir
    for name in ("config.yaml", "metrics.csv", "metrics.json", "last.pt", "best.pt",
                 "plots/curves.png", "plots/confusion_matrix.png", "predictions.csv"):
        assert (d / name).is_file(), name
    metrics = json.loads((d / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert METRIC_KEYS <= set(metrics[split])
        cm = metrics[split]["confusion_matrix"]
        assert len(cm) == 10 and sum(map(sum, cm)) == metrics[split]["n"]
    assert metrics["test"]["accuracy"] > 0.8
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    assert cfg["epochs"] == 3 and cfg["model"] == "cnn" and "weight_decay" in cfg
    with open(d / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    # the best checkpoint is the epoch with the lowest val loss
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert int(best["epoch"]) == metrics["best_epoch"]
    # predictions: one row per test item, probabilities sum to one
    with open(d / "predictions.csv") as fh:
        preds = list(csv.DictReader(fh))
    assert len(preds) == metrics["test"]["n"]
    assert list(preds[0]) == ["id", "label", "class"] + [f"prob_{i}" for i in range(10)]
    assert abs(sum(float(preds[0][f"prob_{i}"]) for i in range(10)) - 1) < 1e-4
    # the loaded model reproduces the stored metrics
    model = cnnlab.load(d / "best.pt")
    test = load_data(None).test
    acc = float((model.predict(test.images.numpy()[:, 0]) == test.labels.numpy()).mean())
    assert acc == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)


def _state(path: Path) -> dict:
    return load_checkpoint(path)["model_state"]


def test_resume_equals_uninterrupted(tmp_path: Path):
    splits = load_data(None)
    base = dict(epochs=4, batch_size=128, model_args={"width": 8}, report=False, seed=3)
    cfg_a = TrainConfig(**base, out=str(tmp_path / "a"))
    a = Trainer(cfg_a, splits, tmp_path / "a", verbose=False)
    a.fit()
    cfg_b = TrainConfig(**base, out=str(tmp_path / "b"))
    b1 = Trainer(cfg_b, splits, tmp_path / "b", verbose=False)
    b1.fit(stop_after=2)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]["epoch"] == 2
    b2 = Trainer(cfg_b, splits, tmp_path / "b", resume=True, verbose=False)
    assert b2.state.epoch == 2
    b2.fit()
    sa, sb = _state(tmp_path / "a" / "last.pt"), _state(tmp_path / "b" / "last.pt")
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert [r["val_loss"] for r in a.state.history] == \
        [r["val_loss"] for r in b2.state.history]


def test_checkpoint_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"arch": {"name": "x"}, "model_state": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(CheckpointError, match="No space left"):
        save_checkpoint(path, {"arch": {"name": "x"}, "model_state": {"w": torch.zeros(3)}})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["model_state"]["w"], torch.ones(3))


def test_early_stopping_keeps_lowest_val_loss(tmp_path: Path):
    # a learning rate so high that val loss stops improving quickly
    run = cnnlab.train(epochs=30, patience=2, lr=0.5, optimizer="sgd", schedule="none",
                       out=str(tmp_path / "es"), verbose=False, **SMALL)
    hist = run.history
    assert run.stopped_early and len(hist) < 30
    best = min(range(len(hist)), key=lambda i: hist[i]["val_loss"]) + 1
    assert run.best_epoch == best
    assert all(h["val_loss"] >= hist[best - 1]["val_loss"] for h in hist[best:])
    assert len(hist) - best == 2


def test_cli_train_predict_evaluate_on_npy(digits_npy: Path, tmp_path: Path):
    out = tmp_path / "run"
    r = run_cli("train", str(digits_npy), "--epochs", "2", "--model-arg", "width=8",
                "--out", str(out), "--no-report")
    assert r.returncode == 0, r.stderr
    preds = tmp_path / "p.csv"
    r = run_cli("predict", "--weights", str(out / "best.pt"), str(digits_npy), "--split", "test",
                "--output", str(preds))
    assert r.returncode == 0, r.stderr
    with open(preds) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 397 and rows[0]["id"] == "0" and rows[-1]["id"] == "396"
    r = run_cli("evaluate", "--weights", str(out / "best.pt"), str(digits_npy), "--split", "val",
                "--json")
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)["val"]
    assert METRIC_KEYS <= set(m) and m["n"] == 400
    stored = json.loads((out / "metrics.json").read_text())["val"]
    assert m["accuracy"] == pytest.approx(stored["accuracy"])


def test_run_folders_are_not_overwritten(tmp_path: Path):
    kw = dict(epochs=1, verbose=False, runs_dir=str(tmp_path), name="same", **SMALL)
    a = cnnlab.train(**kw)
    b = cnnlab.train(**kw)
    assert a.run_dir != b.run_dir and b.run_dir.name == "same-2"
    assert (a.run_dir / "best.pt").is_file() and (b.run_dir / "best.pt").is_file()
