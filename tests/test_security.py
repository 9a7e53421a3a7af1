"""Untrusted files run no code; nothing cnnlab writes is world-writable; runs are never
overwritten without --force.

CLI cases are real `cnnlab` processes forked from a pre-imported interpreter (clitools.Zygote).
"""

from __future__ import annotations

import os
import pickle
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import assert_one_line_error
from conftest import write_image_folder

import cnnlab
from cnnlab.errors import CheckpointError, DataError


class Evil:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204
        return (exec, (f"open({self.marker!r}, 'w').close()",))



@pytest.fixture(scope="module")
def trained(zygote, tmp_path_factory: pytest.TempPathFactory):
    """A small image-folder run trained by the CLI under umask 000 (with report and cache)."""
    root = tmp_path_factory.mktemp("sec")
    data = write_image_folder(root / "imgs", n_per_class=10, size=16)
    cache = root / "cache"
    res = zygote.run("train", data, "--model-arg", "width=4", "--image-size", "16", "--epochs",
                     "1", "--clip-grad", "1.0", "--out", root / "run", umask=0,
                     env={"CNNLAB_CACHE": str(cache)})
    assert res.returncode == 0, res.stderr
    pred = zygote.run("predict", "--weights", root / "run" / "best.pt", data, "--output",
                      root / "run" / "mine.csv", umask=0)
    assert pred.returncode == 0, pred.stderr
    return {"root": root, "data": data, "run": root / "run", "cache": cache}


def evil_checkpoint(good: Path, path: Path, marker: Path) -> Path:
    """A real cnnlab checkpoint plus one object whose unpickling would run code."""
    ckpt = torch.load(good, weights_only=True)
    ckpt["extra"] = Evil(marker)
    torch.save(ckpt, path)
    return path


def test_malicious_checkpoint_is_refused_everywhere(zygote, trained, tmp_path: Path):
    marker = tmp_path / "pwned"
    evil = evil_checkpoint(trained["run"] / "best.pt", tmp_path / "evil.pt", marker)
    # control: an unrestricted load really would run the code
    torch.load(evil, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError, match="refused to load"):
        cnnlab.load(evil)
    assert not marker.exists()
    data = trained["data"]
    resume_run = tmp_path / "resume"
    shutil.copytree(trained["run"], resume_run)
    shutil.copy(evil, resume_run / "last.pt")
    commands = {
        "predict": ["predict", "--weights", evil, data, "--output", tmp_path / "p.csv"],
        "evaluate": ["evaluate", "--weights", evil, data],
        "resume": ["train", "--out", resume_run, "--resume", "--epochs", "2"],
        "init-from": ["train", data, "--init-from", evil, "--epochs", "1",
                      "--out", tmp_path / "init"],
    }
    for name, argv in commands.items():
        res = zygote.run(*argv)
        assert not marker.exists(), f"{name}: the checkpoint's code ran"
        line = assert_one_line_error(res, "refused to load", "could run code",
                                     after_progress=name in ("resume", "init-from"))
        assert "evil.pt" in line or "last.pt" in line, (name, line)
    assert not (tmp_path / "p.csv").exists()


def test_malicious_cifar_batch_and_object_npy_are_refused(zygote, tmp_path: Path):
    marker = tmp_path / "pwned"
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    batch = {b"data": Evil(marker), b"labels": [0, 1]}
    (cifar / "data_batch_1").write_bytes(pickle.dumps(batch))
    pickle.loads((cifar / "data_batch_1").read_bytes())  # control: plain pickle runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match="refused global builtins.exec"):
        cnnlab.data(cifar)
    res = zygote.run("train", cifar, "--out", tmp_path / "run")
    assert not marker.exists()
    assert_one_line_error(res, "data_batch_1", "unsafe", "builtins.exec")

    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "x_images.npy", np.array([Evil(marker)] * 4, dtype=object), allow_pickle=True)
    np.save(npy / "x_labels.npy", np.arange(4))
    res = zygote.run("train", npy, "--out", tmp_path / "run2")
    assert not marker.exists()
    assert_one_line_error(res, "x_images.npy", "pickles) are not allowed")


def test_nothing_written_is_world_writable_even_with_umask_000(trained):
    files = []
    for top in (trained["run"], trained["cache"]):
        for dirpath, dirnames, filenames in os.walk(top):
            for name in dirnames + filenames:
                files.append(Path(dirpath) / name)
        files.append(top)
    names = {p.name for p in files}
    # everything the run writes was really checked
    for expected in ("config.yaml", "metrics.csv", "metrics.json", "last.pt", "best.pt",
                     "predictions.csv", "mine.csv", "curves.png", "confusion_matrix.png",
                     "report.html", "images.npy", "meta.json"):
        assert expected in names, expected
    bad = [f"{p} {stat.filemode(p.stat().st_mode)}" for p in files
           if p.stat().st_mode & (stat.S_IWOTH | stat.S_IWGRP)]
    assert not bad, bad


@pytest.mark.slow
def test_run_folders_are_never_overwritten_without_force(zygote, trained, tmp_path: Path):
    data = trained["data"]
    args = ["train", data, "--model-arg", "width=4", "--image-size", "16", "--epochs", "1",
            "--no-report"]
    first = zygote.run(*args, "--name", "exp", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    original = (tmp_path / "runs" / "exp" / "last.pt").read_bytes()
    second = zygote.run(*args, "--name", "exp", "--seed", "7", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert (tmp_path / "runs" / "exp-2" / "last.pt").is_file()
    assert (tmp_path / "runs" / "exp" / "last.pt").read_bytes() == original
    assert "runs/exp-2" in second.stdout + second.stderr
    # --out names a folder that holds a run: refused, nothing written (no silent exp-3)
    third = zygote.run(*args, "--out", tmp_path / "runs" / "exp", "--seed", "8")
    assert third.returncode == 2 and "already holds a run" in third.stderr, third.stderr
    assert not (tmp_path / "runs" / "exp-3").exists()
    assert (tmp_path / "runs" / "exp" / "last.pt").read_bytes() == original
    # --force overwrites in place
    forced = zygote.run(*args, "--out", tmp_path / "runs" / "exp", "--seed", "9", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "runs" / "exp" / "last.pt").read_bytes() != original
    assert not (tmp_path / "runs" / "exp-3").exists()
