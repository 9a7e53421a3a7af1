"""Run folders: two racing runs never share one; --force never mixes two runs (issue 18,
items 9, 10)."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
from clitools import Zygote
from conftest import write_image_folder

from cnnlab.errors import CnnlabError
from cnnlab.train.rundir import choose_run_dir


def _race(barrier, runs: str, out: str | None, queue) -> None:  # noqa: ANN001
    barrier.wait()
    # what run_training does: choose (and claim), write the config
    try:
        chosen = choose_run_dir(out, runs, "race", resume=False)
    except CnnlabError as exc:  # an explicit --out another process claimed first
        queue.put(f"refused: {exc}")
        return
    (chosen / "config.yaml").write_text("x: 1\n")
    queue.put(str(chosen))


@pytest.mark.slow
@pytest.mark.parametrize("explicit_out", [False, True])
def test_racing_processes_never_share_a_run_folder(tmp_path: Path, explicit_out: bool):
    """Auto-named: each process its own folder; one explicit --out: one wins, the rest are
    refused (none is diverted to OUT-2)."""
    ctx = mp.get_context("fork")
    procs_per_trial, trials = 4, 12
    for t in range(trials):
        runs = tmp_path / f"t{t}"
        out = str(runs / "mine") if explicit_out else None
        barrier, queue = ctx.Barrier(procs_per_trial), ctx.Queue()
        procs = [ctx.Process(target=_race, args=(barrier, str(runs), out, queue))
                 for _ in range(procs_per_trial)]
        for p in procs:
            p.start()
        got = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
            assert p.exitcode == 0
        if explicit_out:
            assert sorted(got)[0] == out, got
            assert all(g.startswith(f"refused: --out {out}: already holds a run") for g in
                       sorted(got)[1:]), got
            assert sorted(p.name for p in runs.iterdir()) == ["mine"]
        else:
            assert len(set(got)) == procs_per_trial, f"trial {t}: two runs shared a folder: {got}"


def test_existing_run_is_never_reused_without_force(tmp_path: Path):
    first = choose_run_dir(None, str(tmp_path), "x", resume=False)
    (first / "metrics.json").write_text("{}")
    second = choose_run_dir(None, str(tmp_path), "x", resume=False)
    assert first.name == "x" and second.name == "x-2"
    user = tmp_path / "mine"
    user.mkdir()
    assert choose_run_dir(str(user), str(tmp_path), "x", resume=False) == user  # empty: ours
    with pytest.raises(CnnlabError, match="already holds a run"):  # explicit: never mine-2
        choose_run_dir(str(user), str(tmp_path), "x", resume=False)
    assert not (tmp_path / "mine-2").exists()


def test_clear_run_outputs_removes_only_cnnlabs_files(tmp_path: Path):
    from cnnlab.train.rundir import clear_run_outputs

    run = choose_run_dir(str(tmp_path / "run"), str(tmp_path), "x", resume=False)
    (run / "plots").mkdir(parents=True)
    # a killed run may not have listed these in its manifest yet: they are cnnlab's names
    ours = ["config.yaml", "metrics.csv", "metrics.json", "steps.csv", "predictions.csv",
            "report.html", "best.pt", "last.pt", "plots/curves.png", "plots/gradcam.png",
            ".last.pt.abc.tmp"]
    theirs = ["notes.txt", "my_model.onnx", "data.csv", "plots/README.md", "sub/best.pt"]
    for name in ours + theirs:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    clear_run_outputs(run)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted([".cnnlab-run", *theirs])


@pytest.mark.slow
def test_cli_force_leaves_no_file_of_the_previous_run(zygote: Zygote, tmp_path: Path):
    data = write_image_folder(tmp_path / "d", n_per_class=6, size=8, classes=2)
    run = tmp_path / "run"
    args = ["train", data, "--model", "mlp", "--image-size", "8", "--epochs", "1", "--out", run]
    assert zygote.run(*args, "--no-report").returncode == 0
    # the old run had a report and plots; the user keeps a file of their own there
    (run / "report.html").write_text("<html>old run</html>")
    (run / "plots").mkdir(exist_ok=True)
    (run / "plots" / "failures.png").write_bytes(b"old")
    (run / "steps.csv").write_text("step,epoch\n999,9\n")
    (run / "my-notes.txt").write_text("keep me")
    res = zygote.run(*args, "--no-report", "--force", "--log-every", "1")
    assert res.returncode == 0, res.stderr
    assert not (run / "report.html").exists()
    assert not (run / "plots" / "failures.png").exists()
    assert "999" not in (run / "steps.csv").read_text()
    assert (run / "my-notes.txt").read_text() == "keep me"
    assert (run / "metrics.json").is_file() and (run / "best.pt").is_file()
