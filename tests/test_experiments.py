"""Experiments: sweep, cv, seeds, compare, lr-find each write one folder; reruns skip done work."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
from conftest import run_cli, write_pattern_npy

from cnnlab.data.load import LoadOptions, load_data
from cnnlab.errors import CnnlabError
from cnnlab.experiments import compare_runs, lr_find, run_cv, run_seeds, run_sweep
from cnnlab.settings import TrainConfig

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

# Tiny and single-threaded: the machine is shared, and 2 threads on 2 busy cores crawl.
BASE = {"model": "mlp", "model_args": {"hidden": 16}, "epochs": 2, "batch_size": 32,
        "num_threads": 1, "report": False, "extra": {"plots": False}}


def base_cfg(**kw: object) -> TrainConfig:
    return TrainConfig(**{**BASE, **kw})


@pytest.fixture
def pattern_npy(tmp_path: Path) -> Path:
    """Synthetic 8x8 grayscale images of 3 easy classes: 90 to train on, 30 to test."""
    return write_pattern_npy(tmp_path / "pat", 40)


@pytest.fixture
def splits(pattern_npy: Path):
    return load_data(pattern_npy, LoadOptions())


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_sweep_cli_2x2_marks_best_and_summarises(pattern_npy: Path, tmp_path: Path):
    out = tmp_path / "sweep"
    r = run_cli("sweep", str(pattern_npy), "--lr", "1e-3,3e-2", "--optimizer", "sgd,adam",
                "--model", "mlp", "--model-arg", "hidden=16", "--epochs", "2", "--num-threads",
                "1", "--no-member-plots", "--out", str(out))
    assert r.returncode == 0, r.stderr
    rows = _csv(out / "summary.csv")
    assert len(rows) == 4
    assert {(row["lr"], row["optimizer"]) for row in rows} == \
        {("0.001", "sgd"), ("0.001", "adam"), ("0.03", "sgd"), ("0.03", "adam")}
    members = sorted(p.name for p in (out / "members").iterdir())
    assert len(members) == 4 and all((out / "members" / m / "metrics.json").is_file()
                                     for m in members)
    # the marked best has the highest val accuracy (ties: the lower val loss)
    summary = json.loads((out / "summary.json").read_text())
    scored = []
    for m in members:
        val = _metrics(out / "members" / m)["val"]
        scored.append(((val["accuracy"], -val["loss"]), m))
    best = max(scored)[1]
    assert summary["best"]["member"] == best
    assert [row["member"] for row in rows if row["best"] == "True"] == [best]
    assert (out / "curves.png").stat().st_size > 1000
    assert "best" in r.stderr and "sweep: 4 settings" in r.stdout  # the table is data: stdout
    # the settings of each member really were used
    cfg = (out / "members" / "lr=0.03_opt=sgd" / "config.yaml").read_text()
    assert "lr: 0.03" in cfg and "optimizer: sgd" in cfg


def test_sweep_rerun_retrains_only_the_unfinished_member(splits, tmp_path: Path):
    out = tmp_path / "sweep"
    grid = {"lr": [1e-3, 1e-2], "batch_size": [16, 32]}
    first = run_sweep(base_cfg(), grid, splits=splits, out=out, verbose=False)
    assert len(first.members) == 4 and all(m.trained for m in first.members)
    stamps = {m.name: (m.run_dir / "best.pt").stat().st_mtime_ns for m in first.members}
    victim = first.members[1]
    (victim.run_dir / "metrics.json").unlink()  # interrupted before it finished
    again = run_sweep(base_cfg(), grid, splits=splits, out=out, verbose=False)
    assert [m.name for m in again.members if m.trained] == [victim.name]
    for m in again.members:
        assert (m.run_dir / "metrics.json").is_file()
        if m.name != victim.name:
            assert (m.run_dir / "best.pt").stat().st_mtime_ns == stamps[m.name]
    # a member folder without a checkpoint starts again from scratch
    for f in victim.run_dir.iterdir():
        f.unlink() if f.is_file() else None
    third = run_sweep(base_cfg(), grid, splits=splits, out=out, verbose=False)
    assert [m.name for m in third.members if m.trained] == [victim.name]
    # other base settings in the same folder: refuse, do not mix
    with pytest.raises(CnnlabError, match="other settings"):
        run_sweep(base_cfg(epochs=3), grid, splits=splits, out=out, verbose=False)
    # prune keeps the best member's checkpoints only
    pruned = run_sweep(base_cfg(), grid, splits=splits, out=out, prune=True, verbose=False)
    for m in pruned.members:
        assert (m.run_dir / "best.pt").is_file() == (m is pruned.best)
        assert (m.run_dir / "metrics.json").is_file()


def test_cv_three_folds_aggregates_match_members(splits, tmp_path: Path):
    out = tmp_path / "cv"
    res = run_cv(base_cfg(), folds=3, splits=splits, out=out, verbose=False)
    pool = len(splits.train) + len(splits.val)
    rows = [r for r in _csv(out / "summary.csv") if r["fold"] in {"1", "2", "3"}]
    assert len(rows) == 3
    # the held-out folds partition the pool; each fold model saw the rest only
    assert sum(int(r["n_heldout"]) for r in rows) == pool
    held = [set(m.splits.test.ids) for m in res.members]
    assert all(not (a & b) for i, a in enumerate(held) for b in held[i + 1:])
    for m in res.members:
        assert not set(m.splits.train.ids) & set(m.splits.test.ids)
        assert not set(m.splits.val.ids) & set(m.splits.test.ids)
    accs = [_metrics(out / "members" / f"fold{k}")["test"]["accuracy"] for k in (1, 2, 3)]
    losses = [_metrics(out / "members" / f"fold{k}")["test"]["loss"] for k in (1, 2, 3)]
    agg = json.loads((out / "summary.json").read_text())["aggregates"]
    assert agg["heldout_accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
    assert agg["heldout_accuracy"]["std"] == pytest.approx(statistics.stdev(accs))
    assert agg["heldout_loss"]["mean"] == pytest.approx(statistics.fmean(losses))
    mean_row = next(r for r in _csv(out / "summary.csv") if r["fold"] == "mean")
    assert float(mean_row["heldout_accuracy"]) == pytest.approx(statistics.fmean(accs), rel=1e-5)
    assert (out / "curves.png").is_file()
    again = run_cv(base_cfg(), folds=3, splits=splits, out=out, verbose=False)
    assert not any(m.trained for m in again.members)
    with pytest.raises(CnnlabError, match="folds"):
        run_cv(base_cfg(), folds=4, splits=splits, out=out, verbose=False)


def test_seeds_three_runs_mean_std_min_max(splits, tmp_path: Path):
    out = tmp_path / "seeds"
    res = run_seeds(base_cfg(), n=3, splits=splits, out=out, verbose=False)
    assert [m.cfg.seed for m in res.members] == [0, 1, 2]
    accs = [_metrics(out / "members" / f"seed={s}")["test"]["accuracy"] for s in (0, 1, 2)]
    agg = json.loads((out / "summary.json").read_text())["aggregates"]["test_accuracy"]
    assert agg["n"] == 3
    assert agg["mean"] == pytest.approx(statistics.fmean(accs))
    assert agg["std"] == pytest.approx(statistics.stdev(accs))
    assert (agg["min"], agg["max"]) == (pytest.approx(min(accs)), pytest.approx(max(accs)))
    rows = _csv(out / "summary.csv")
    assert [r["seed"] for r in rows] == ["0", "1", "2", "mean", "std", "min", "max"]
    # different seeds really train different models on the same split
    losses = [[float(r["train_loss"]) for r in _csv(out / "members" / f"seed={s}" / "metrics.csv")]
              for s in (0, 1, 2)]
    assert losses[0] != losses[1] != losses[2]
    # more seeds later: the first three are reused
    more = run_seeds(base_cfg(), n=4, splits=splits, out=out, verbose=False)
    assert [m.trained for m in more.members] == [False, False, False, True]


def test_compare_and_lr_find(splits, tmp_path: Path):
    a = run_sweep(base_cfg(), {"optimizer": ["sgd", "adam"]}, splits=splits,
                  out=tmp_path / "sw", verbose=False)
    res = compare_runs([m.run_dir for m in a.members], out=tmp_path / "cmp", verbose=False)
    # lr was left to each optimizer's default, and those differ: compare says which they were
    assert set(res.differences) == {"optimizer", "lr"}
    assert res.differences["lr"] == ["0.01 (default)", "0.003 (default)"]
    rows = _csv(tmp_path / "cmp" / "summary.csv")
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"]
    for r, m in zip(rows, a.members, strict=True):
        assert float(r["accuracy"]) == pytest.approx(m.metrics["test"]["accuracy"], rel=1e-5)
    assert (tmp_path / "cmp" / "curves.png").is_file()
    with pytest.raises(CnnlabError, match="not a cnnlab run"):
        compare_runs([tmp_path], out=tmp_path / "cmp2", verbose=False)
    found = lr_find(base_cfg(), splits=splits, out=tmp_path / "lrf", steps=40, verbose=False)
    assert 5 <= len(found.lrs) <= 40
    assert found.lrs == sorted(found.lrs) and found.lrs[0] == pytest.approx(1e-7)
    assert found.suggested is not None and 1e-7 <= found.suggested <= 10
    assert {p.name for p in (tmp_path / "lrf").iterdir()} == \
        {"lr_find.csv", "lr_find.json", "lr_find.png"}
    assert json.loads((tmp_path / "lrf" / "lr_find.json").read_text())["suggested_lr"] == \
        pytest.approx(found.suggested)
