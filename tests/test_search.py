"""cnnlab search: a space over any setting, Optuna trials as run folders, pruning, many workers
(processes on one SQLite study, and a real PostgreSQL server), and --jobs for experiments."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, write_pattern_npy
from pgserver import pg_server

from cnnlab.errors import CnnlabError
from cnnlab.experiments.search_space import split_space

# Tiny and single-threaded: the machine is shared.
TINY = ["--model", "mlp", "--model-arg", "hidden=16", "--num-threads", "1", "--no-member-plots"]


@pytest.fixture
def pattern_npy(tmp_path: Path) -> Path:
    """Synthetic 8x8 grayscale images of 3 easy classes."""
    return write_pattern_npy(tmp_path / "pat", 40, test_every=None)


def _study(url: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=url)


def _real_trials(study) -> list:
    return [t for t in study.get_trials() if not t.user_attrs.get("surplus")]


def test_startup_trials_fill_the_space_instead_of_drawing_at_random():
    import math

    import optuna

    from cnnlab.experiments.search import make_sampler
    from cnnlab.experiments.search_space import suggest

    _, space = split_space({"lr": "1e-4:1e-1:log", "optimizer": "sgd,adamw"})
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    points = {}
    for seed in (0, 1):
        study = optuna.create_study(sampler=make_sampler(seed))
        study.optimize(lambda t: suggest(t, space)["lr"], n_trials=4)
        points[seed] = [(t.params["lr"], t.params["optimizer"]) for t in study.trials]
        # the first 4 rates lie one in each quarter of the log range (random: 3 in 32 seeds)
        quarters = {int(4 * (math.log10(lr) + 4) / 3) for lr, _ in points[seed]}
        assert quarters == {0, 1, 2, 3}, points[seed]
        assert {o for _, o in points[seed]} == {"sgd", "adamw"}  # both optimizers tried
    assert points[0] != points[1]  # another seed, another design
    again = optuna.create_study(sampler=make_sampler(0))
    again.optimize(lambda t: suggest(t, space)["lr"], n_trials=4)
    assert [(t.params["lr"], t.params["optimizer"]) for t in again.trials] == points[0]


def test_space_ranges_lists_and_fixed_values_use_the_settings_checks():
    fixed, space = split_space({"lr": "1e-4:1e-1:log", "batch_size": "32,64",
                                "optimizer": "sgd,adamw", "epochs": "3",
                                "augment": "hflip,rotate=10"},
                               ["model_args.hidden=8:32", "model_args.depth=2"])
    assert space["lr"] == {"type": "float", "low": 1e-4, "high": 0.1, "log": True}
    assert space["batch_size"] == {"type": "categorical", "choices": [32, 64]}
    assert space["optimizer"]["choices"] == ["sgd", "adamw"]
    assert space["model_args.hidden"] == {"type": "int", "low": 8, "high": 32, "log": False}
    # single values and settings that are not numbers/choices stay fixed (commas included)
    assert fixed == {"epochs": "3", "augment": "hflip,rotate=10", "model_args": {"depth": 2}}
    for bad, msg in [({"lr": "0:1"}, "--lr 0"), ({"batch_size": "0,32"}, "--batch-size 0"),
                     ({"optimizer": "sgd,adamz"}, "adamw"), ({"lr": "0.1:0.01"}, "LO < HI"),
                     ({"momentum": "0:0.9:log"}, "log range")]:
        with pytest.raises(CnnlabError, match=msg):
            split_space(bad)


@pytest.mark.slow
def test_search_trials_are_run_folders_and_a_rerun_continues_the_study(pattern_npy, tmp_path):
    out = tmp_path / "s"
    args = ["search", str(pattern_npy), "--lr", "1e-3:0.3:log", "--optimizer", "sgd,adamw",
            "--epochs", "2", "--pruner", "none", "--out", str(out), *TINY]
    r = run_cli(*args, "--trials", "3")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "leaderboard.csv")))
    assert sorted(int(x["trial"]) for x in rows) == [0, 1, 2]
    meta = json.loads((out / "search.json").read_text())
    best = meta["best"]
    assert rows[0]["best"] == "True" and int(rows[0]["trial"]) == best["trial"]
    assert float(rows[0]["val_acc"]) == max(float(x["val_acc"]) for x in rows)
    run = Path(best["run_dir"])  # a complete run folder, as `cnnlab train` writes it
    assert (run / "metrics.json").is_file() and (run / "best.pt").is_file()
    assert json.loads((run / "metrics.json").read_text())["val"]["accuracy"] == best["value"]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["lr"] == best["params"]["lr"] and cfg["optimizer"] == best["params"]["optimizer"]
    page = (out / "experiment.html").read_text()  # the page every experiment writes
    table = page.split("<tbody>")[-1].split("</tbody>")[0]  # the members' table
    assert table.count("<tr") == 3 and table.count('<tr class="best">') == 1
    assert page.count("folder</a>") == 3 and 'src="data:image/png;base64,' in page
    first = {n: (out / "trials" / str(n) / "metrics.json").stat().st_mtime_ns for n in range(3)}
    # --trials counts the whole study: a rerun adds 2 trials and trains none of the first 3 again
    r = run_cli(*args, "--trials", "5")
    assert r.returncode == 0, r.stderr
    assert "continuing a study of 3 trials" in r.stderr
    study = _study(f"sqlite:///{out / 'study.db'}", "s")
    assert sorted(t.number for t in _real_trials(study)) == [0, 1, 2, 3, 4]
    assert all((out / "trials" / str(n) / "metrics.json").stat().st_mtime_ns == first[n]
               for n in range(3))
    # another space is refused, not mixed into the study
    r = run_cli(*[a if a != "sgd,adamw" else "sgd,rmsprop" for a in args], "--trials", "6")
    assert r.returncode == 2 and "another space" in r.stderr
    r = run_cli("search", "show", str(out))
    assert r.returncode == 0, r.stderr
    assert f"best: trial {best['trial']}" in r.stderr and "5 complete" in r.stdout + r.stderr


@pytest.mark.slow
def test_pruning_stops_the_obviously_bad_trials_early(pattern_npy, tmp_path):
    from cnnlab.experiments.search import run_search
    from cnnlab.settings import TrainConfig

    base = TrainConfig(data=str(pattern_npy), model="mlp", model_args={"hidden": 16}, epochs=5,
                       num_threads=1, report=False, optimizer="adamw", lr=1e-2,
                       extra={"plots": False})
    # lr 1e-6 learns nothing in 5 epochs; 1e-2 learns these classes within an epoch or two
    space = {"lr": {"type": "categorical", "choices": [1e-6, 1e-2]}}
    res = run_search(base, space, out=tmp_path / "p", trials=10, metric="val_loss",
                     pruner="median", prune_after=1, verbose=False)
    pruned = [r for r in res.rows if r["state"] == "pruned"]
    done = [r for r in res.rows if r["state"] == "complete"]
    assert pruned, res.rows
    assert all(r["lr"] == 1e-6 for r in pruned)  # only bad configs are stopped
    assert res.best["lr"] == 1e-2
    for r in pruned:  # the run folder stays, marked, with the epochs it trained
        run = Path(r["run_dir"])
        mark = json.loads((run / "pruned.json").read_text())
        assert mark["epoch"] < 5 and not (run / "metrics.json").exists()
        assert len(list(csv.DictReader(open(run / "metrics.csv")))) == mark["epoch"]
    assert sum(r["epochs_run"] for r in pruned) < 5 * len(pruned)
    assert all(r["epochs_run"] == 5 for r in done)


def _worker(pattern_npy: Path, out: Path, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "cnnlab", "search", str(pattern_npy), "--lr", "1e-3:0.1:log",
            "--batch-size", "16,32,64", "--epochs", "3", "--pruner", "none", "--out", str(out),
            *TINY, *extra]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_no_trial_twice(url: str, name: str, n: int, procs: list[subprocess.Popen]):
    outputs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    study = _study(url, name)
    trials = _real_trials(study)
    assert sorted(t.number for t in trials) == list(range(n))
    assert all(t.state.name == "COMPLETE" for t in trials)
    dirs = [t.user_attrs["run_dir"] for t in trials]
    assert len(set(dirs)) == n and all(Path(d, "metrics.json").is_file() for d in dirs)
    # each trial line is printed by exactly one process
    ran = [{int(line.split()[1]) for line in err.splitlines() if line.startswith("trial ")}
           for _, err in outputs]
    assert set.union(*ran) == set(range(n)) and sum(map(len, ran)) == n
    return study


@pytest.mark.slow
def test_two_search_processes_share_one_sqlite_study(pattern_npy, tmp_path):
    out = tmp_path / "shared"
    procs = [_worker(pattern_npy, out, "--trials", "6") for _ in range(2)]
    _check_no_trial_twice(f"sqlite:///{out / 'study.db'}", "shared", 6, procs)


@pytest.mark.slow
def test_two_workers_on_a_postgresql_study(pattern_npy, tmp_path):
    with pg_server() as url:
        # two "machines": each its own folder for its trials, one study in the server
        procs = [_worker(pattern_npy, tmp_path / f"m{i}", "--trials", "5", "--storage", url,
                         "--study", "pg") for i in range(2)]
        study = _check_no_trial_twice(url, "pg", 5, procs)
        assert {Path(t.user_attrs["run_dir"]).parents[1].name for t in _real_trials(study)} <= \
            {"m0", "m1"}
        r = run_cli("search", "show", str(tmp_path / "m0"))
        assert r.returncode == 0 and "5 complete" in r.stdout + r.stderr, r.stderr


@pytest.mark.slow
def test_workers_option_runs_trials_in_several_processes(pattern_npy, tmp_path):
    out = tmp_path / "w"
    r = run_cli("search", str(pattern_npy), "--lr", "1e-3:0.1:log", "--epochs", "2", "--pruner",
                "none", "--trials", "4", "--workers", "2", "--out", str(out), *TINY)
    assert r.returncode == 0, r.stderr
    trials = _real_trials(_study(f"sqlite:///{out / 'study.db'}", "w"))
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers trained trials
    assert "[w1]" in r.stderr and "[w2]" in r.stderr


@pytest.mark.slow
def test_sweep_jobs_2_equals_jobs_1_in_deterministic_mode(pattern_npy, tmp_path):
    from cnnlab.experiments import run_sweep
    from cnnlab.settings import TrainConfig

    base = TrainConfig(data=str(pattern_npy), model="cnn", epochs=2, batch_size=16,
                       num_threads=1, deterministic=True, report=False, extra={"plots": False})
    grid = {"lr": [1e-3, 1e-2, 3e-2]}
    seq = run_sweep(base, grid, out=tmp_path / "j1", jobs=1, verbose=False)
    par = run_sweep(base, grid, out=tmp_path / "j2", jobs=2, verbose=False)
    for a, b in zip(seq.members, par.members, strict=True):
        assert a.name == b.name
        assert a.metrics["val"]["loss"] is not None
        for split in ("train", "val"):
            assert a.metrics[split]["loss"] == b.metrics[split]["loss"]
            assert a.metrics[split]["accuracy"] == b.metrics[split]["accuracy"]
        assert [r["val_loss"] for r in a.history] == [r["val_loss"] for r in b.history]
    assert seq.best.name == par.best.name


@pytest.mark.slow
def test_seeds_cli_jobs_without_num_threads_still_matches_sequential(pattern_npy, tmp_path):
    args = ["seeds", str(pattern_npy), "-n", "2", "--model", "mlp", "--model-arg", "hidden=16",
            "--epochs", "2", "--deterministic", "--no-member-plots"]
    r1 = run_cli(*args, "--jobs", "1", "--out", str(tmp_path / "a"))
    r2 = run_cli(*args, "--jobs", "2", "--out", str(tmp_path / "b"))
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    assert "in 2 processes" in r2.stderr
    for seed in (0, 1):
        a, b = (json.loads((tmp_path / d / "members" / f"seed={seed}" / "metrics.json")
                           .read_text()) for d in ("a", "b"))
        assert a["val"]["loss"] == b["val"]["loss"] and a["train"] == b["train"]
