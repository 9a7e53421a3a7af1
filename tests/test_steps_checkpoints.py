"""--steps, --keep-every/--resume-from, --eval-every, --split-seed and the train statistics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import run_cli

import cnnlab
from cnnlab import io
from cnnlab.checkpoint import load_checkpoint
from cnnlab.data import load_data
from cnnlab.errors import CnnlabError
from cnnlab.settings import data_options

SMALL = {"model_args": {"width": 8}, "batch_size": 64, "report": False}


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model_state"]


def test_steps_stops_at_that_optimization_step(tmp_path: Path):
    # digits: 1078 training images -> 17 batches of 64 per epoch; 25 steps = 1 epoch + 8 steps.
    run = cnnlab.train(steps=25, epochs=50, out=str(tmp_path / "r"), verbose=False, **SMALL)
    assert [r["step"] for r in run.history] == [17, 25]
    assert load_checkpoint(run.run_dir / "last.pt")["train_state"]["global_step"] == 25
    # the schedule ends on step 25 (cosine reaches ~0), not after 50 epochs
    assert run.history[-1]["lr"] < 0.01 * run.resolved["lr"]


def test_resume_from_epoch_2_equals_an_uninterrupted_run(tmp_path: Path):
    kw = {**SMALL, "epochs": 3, "keep_every": 2, "deterministic": True, "device": "cpu",
          "log_every": 5}
    run = cnnlab.train(out=str(tmp_path / "r"), verbose=False, **kw)
    d = run.run_dir
    full_steps = io.read_csv(d / "steps.csv")
    assert (d / "epoch_2.pt").is_file()
    assert not (d / "epoch_1.pt").exists() and not (d / "epoch_3.pt").exists()
    full_rows = io.read_csv(d / "metrics.csv")
    full_w, best_w = _weights(d / "last.pt"), _weights(d / "best.pt")
    assert load_checkpoint(d / "epoch_2.pt")["train_state"]["epoch"] == 2

    again = cnnlab.train(resume_from=str(d / "epoch_2.pt"), verbose=False)
    assert again.run_dir == d
    rows = io.read_csv(d / "metrics.csv")
    drop = ("time_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == \
        [{k: v for k, v in r.items() if k not in drop} for r in full_rows]
    for name, ref in (("last.pt", full_w), ("best.pt", best_w)):
        w = _weights(d / name)
        assert all(torch.equal(w[k], ref[k]) for k in ref), name
    # steps.csv: epoch 3's steps once each (not again after the first run's), same values
    steps = io.read_csv(d / "steps.csv")
    assert [r["step"] for r in steps] == list(range(5, 3 * 17 + 1, 5))
    assert [r["loss"] for r in steps] == [r["loss"] for r in full_steps]
    # best.pt has no training state: the one-line error names the files that can resume
    with pytest.raises(CnnlabError, match=r"best.pt: holds weights only.*here epoch_2.pt, "
                       r"last.pt"):
        cnnlab.train(resume_from=str(d / "best.pt"), verbose=False)


def test_eval_every_writes_val_columns_and_step_curves(tmp_path: Path):
    run = cnnlab.train(epochs=2, eval_every=5, out=str(tmp_path / "r"), verbose=False,
                       **{**SMALL, "report": False})
    rows = io.read_csv(run.run_dir / "steps.csv")
    assert [r["step"] for r in rows] == [5, 10, 15, 20, 25, 30]  # 34 steps in all
    assert all(0 <= r["val_acc"] <= 1 and r["val_loss"] > 0 for r in rows)
    # the model improves within the first epoch: visible only with mid-epoch validation
    assert rows[2]["val_acc"] > rows[0]["val_acc"]
    assert (run.run_dir / "plots" / "curves_steps.png").stat().st_size > 1000
    # validation does not change what is learned
    plain = cnnlab.train(epochs=2, out=str(tmp_path / "p"), verbose=False, **SMALL)
    assert plain.history[-1]["val_loss"] == pytest.approx(run.history[-1]["val_loss"], abs=1e-6)


def test_eval_every_prints_a_line(tmp_path: Path):
    r = run_cli("train", "--epochs", "1", "--eval-every", "8", "--out", str(tmp_path / "r"),
                "--no-report", "--batch-size", "64")
    assert r.returncode == 0, r.stderr
    # progress goes to stderr (stdout stays for data)
    assert "step      8/17" in r.stderr and "step     16/17" in r.stderr
    assert "splits: test = 20% stratified split" in r.stderr
    assert "mean [77.836] std [95.796] (0..255)" in r.stderr


def test_split_seed_moves_the_split_alone(tmp_path: Path):
    def val_ids(**given: object) -> list[str]:
        return load_data(None, data_options(given)).val.ids

    assert val_ids(seed=3) == val_ids(seed=3, split_seed=3) == val_ids(seed=0, split_seed=3)
    assert val_ids(seed=3, split_seed=4) != val_ids(seed=3)
    # the run records it, so evaluate/predict re-split the same way
    run = cnnlab.train(epochs=1, split_seed=5, out=str(tmp_path / "r"), verbose=False, **SMALL)
    cfg = cnnlab.load(run.run_dir / "best.pt").config
    assert cfg["split_seed"] == 5 and cfg["seed"] == 0
    assert [str(r["id"]) for r in io.read_csv(run.run_dir / "predictions.csv")] == \
        load_data(None, data_options({"split_seed": 5})).test.ids


def test_train_statistics_in_metrics_json(tmp_path: Path):
    run = cnnlab.train(epochs=1, out=str(tmp_path / "r"), verbose=False, **SMALL)
    st = json.loads((run.run_dir / "metrics.json").read_text())["train_stats"]
    assert len(st["mean"]) == 1 and st["mean_255"][0] == pytest.approx(st["mean"][0] * 255,
                                                                       abs=1e-2)
    assert 0.2 < st["mean"][0] < 0.4 and 0.3 < st["std"][0] < 0.45  # digits are dark


def test_live_plot_redraws_mid_epoch_by_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from cnnlab.run import LivePlot, train

    drawn: list[list[float]] = []
    monkeypatch.setattr("cnnlab.report.plots.plot_curves",
                        lambda rows, path, title: drawn.append([r["epoch"] for r in rows]))
    # every=0: "10 s have passed" after each step, as in an epoch that takes minutes
    train({**SMALL, "epochs": 1, "out": str(tmp_path / "r")}, verbose=False,
          callbacks=[LivePlot(every=0.0)])
    assert drawn[0] == [pytest.approx(1 / 17)]  # a running point before the epoch ended
    assert len(drawn) >= 17
