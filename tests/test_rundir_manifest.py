"""Run folders and their manifest (issue 21 item 4, issue 22 item 3): --force removes only the
files a cnnlab run's manifest lists, a folder that is no cnnlab run is never cleared, and an
explicit --out that already holds something is refused instead of silently becoming OUT-2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clitools import Zygote, assert_one_line_error
from conftest import write_image_folder

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.train.rundir import MANIFEST, choose_run_dir, clear_run_outputs

TINY = ["--model-arg", "width=4", "--image-size", "8", "--epochs", "1", "--no-report",
        "--num-threads", "1"]



@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("d") / "imgs", n_per_class=6, size=8,
                              classes=2)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _users_files(folder: Path) -> dict[str, bytes]:
    """What a user keeps in a folder, under the names cnnlab's own outputs have."""
    files = {"model.pt": b"my own weights", "summary.csv": b"a,b\n1,2\n",
             "lr_find.png": b"\x89PNG my plot", "notes.txt": b"keep me"}
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return files


def test_force_refuses_a_folder_that_holds_no_cnnlab_run(zygote: Zygote, data: Path,
                                                         tmp_path: Path):
    folder = tmp_path / "mine"
    _users_files(folder)
    before = _snapshot(folder)
    res = zygote.run("train", data, *TINY, "--out", folder, "--force")
    assert_one_line_error(res, "--force", "not a cnnlab run folder", "nothing in it is removed")
    assert _snapshot(folder) == before  # every file of the user's is there, unchanged
    assert not (tmp_path / "mine-2").exists()


@pytest.mark.slow
def test_force_clears_only_what_the_runs_manifest_lists(zygote: Zygote, data: Path,
                                                        tmp_path: Path):
    run = tmp_path / "run"
    # as `make demo` does: --force on a folder that does not exist yet, then on its own run
    first = zygote.run("train", data, *TINY, "--out", run, "--force", "--log-every", "1")
    assert first.returncode == 0, first.stderr
    listed = json.loads((run / MANIFEST).read_text())["files"]
    assert {"config.yaml", "last.pt", "best.pt", "metrics.json", "steps.csv"} <= set(listed)
    theirs = _users_files(run)  # dropped into the finished run folder afterwards
    second = zygote.run("train", data, *TINY, "--out", run, "--force")
    assert second.returncode == 0, second.stderr
    assert not (run / "steps.csv").exists()  # the first run's file, not written by the second
    assert (run / "metrics.json").is_file() and (run / "best.pt").is_file()
    for name, content in theirs.items():
        assert (run / name).read_bytes() == content, name
    assert not set(theirs) & set(json.loads((run / MANIFEST).read_text())["files"])


def test_clear_run_outputs_keeps_what_the_manifest_does_not_list(tmp_path: Path):
    run = choose_run_dir(str(tmp_path / "run"), str(tmp_path), "x", resume=False)
    (tmp_path / "outside.txt").write_text("not the run's")
    ours = ["config.yaml", "last.pt", "metrics.csv", "plots/curves.png", "doctor/doctor.json",
            "custom-output.bin"]
    for name in ours:
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("x")
    theirs = _users_files(run)
    (run / MANIFEST).write_text(json.dumps({"cnnlab_run": 1, "files": [
        "doctor/doctor.json", "custom-output.bin", "../outside.txt", "/etc/hostname"]}))
    removed = clear_run_outputs(run)
    assert sorted(removed) == sorted(ours)
    assert not (run / "doctor").exists()  # emptied, so removed
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    assert left == sorted([MANIFEST, *theirs])
    assert (tmp_path / "outside.txt").read_text() == "not the run's"


@pytest.mark.slow
def test_explicit_out_that_holds_a_run_is_refused(zygote: Zygote, data: Path, tmp_path: Path):
    run = tmp_path / "run"
    cnnlab.train(data=str(data), model_args={"width": 4}, image_size=8, epochs=1, report=False,
                 out=str(run), verbose=False, num_threads=1)
    before = _snapshot(run)
    res = zygote.run("train", data, *TINY, "--out", run, "--seed", "3")
    assert_one_line_error(res, f"--out {run}: already holds a run", "--resume", "--force")
    with pytest.raises(CnnlabError, match="already holds a run"):  # the Python API too
        cnnlab.train(data=str(data), model_args={"width": 4}, image_size=8, epochs=1,
                     out=str(run), verbose=False)
    assert _snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no run-2
    # a folder of the user's (no run in it) is refused too, and left as it was
    _users_files(tmp_path / "mine")
    with pytest.raises(CnnlabError, match="holds other files and no cnnlab run"):
        choose_run_dir(str(tmp_path / "mine"), str(tmp_path), "x", resume=False)
    assert not (tmp_path / "mine" / MANIFEST).exists()


def test_only_auto_named_runs_get_a_suffix(tmp_path: Path):
    first = choose_run_dir(None, str(tmp_path), "x", resume=False)
    (first / "metrics.json").write_text("{}")
    second = choose_run_dir(None, str(tmp_path), "x", resume=False)
    assert (first.name, second.name) == ("x", "x-2")
    assert (second / MANIFEST).is_file()
    with pytest.raises(CnnlabError, match="already holds a run"):
        choose_run_dir(str(first), str(tmp_path), "x", resume=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x", "x-2"]


@pytest.mark.slow
def test_two_processes_racing_for_one_explicit_out(zygote: Zygote, data: Path, tmp_path: Path):
    for trial in range(3):
        out = tmp_path / f"t{trial}" / "run"
        children = [zygote.start("train", data, *TINY, "--out", out) for _ in range(2)]
        results = [c.wait() for c in children]
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 2], [(r.returncode, r.stderr[-300:]) for r in results]
        loser = next(r for r in results if r.returncode == 2)
        assert_one_line_error(loser, f"--out {out}: already holds a run", "--resume", "--force")
        assert sorted(p.name for p in out.parent.iterdir()) == ["run"]  # nobody went to run-2
        assert (out / "metrics.json").is_file()
