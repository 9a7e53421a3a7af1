"""Interrupted runs lose nothing: SIGKILL at random moments and Ctrl-C, then --resume.

Tiny synthetic set (600 8x8 digits) and an MLP with dropout, so the RNG state matters. The
uninterrupted reference is a fresh `cnnlab train` process started first, running alongside.
The interrupted runs are `cnnlab train` processes forked from a pre-imported interpreter
(clitools.Zygote): real processes receiving real SIGKILL/SIGINT, minus the import time.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import Zygote, popen_cli, shared_zygote
from conftest import digits_arrays

from cnnlab.checkpoint import load_checkpoint

EPOCHS = 10


def train_args(data: Path, out: Path) -> list:
    """The same deterministic run for the reference and the interrupted copies."""
    return ["train", data, "--model", "mlp", "--model-arg", "hidden=512", "--model-arg",
            "dropout=0.2", "--epochs", str(EPOCHS), "--batch-size", "16", "--seed", "3",
            "--deterministic", "--no-report", "--out", out]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory):
    """(data path, a function returning the finished uninterrupted run folder)."""
    root = tmp_path_factory.mktemp("interrupt")
    x, y = digits_arrays(600)
    data = root / "digits.npz"
    np.savez(data, x=x, y=y)
    proc = popen_cli(*train_args(data, root / "reference"))

    def finished() -> Path:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        return root / "reference"
    yield data, finished
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module")
def zygote() -> Zygote:
    return shared_zygote()


def wait_until(pred, proc, timeout: float = 120, poll: float = 0.001) -> bool:
    """Poll `pred` until it holds (True) or the process ends / time runs out (False)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        if not proc.alive():
            return False
        time.sleep(poll)
    return False


def temp_files(run: Path) -> list[Path]:
    """Temp files of atomic writes (any file), left behind if the writer died."""
    return sorted(run.glob(".*.tmp"))


def checkpoint_temps(run: Path) -> list[Path]:
    """Temp files of checkpoint writes: present only while save_checkpoint is writing."""
    return sorted(run.glob(".last.pt.*.tmp")) + sorted(run.glob(".best.pt.*.tmp"))


def inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def assert_same_weights(a: Path, b: Path) -> None:
    sa, sb = load_checkpoint(a)["model_state"], load_checkpoint(b)["model_state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{a.name}: {k} differs from the uninterrupted run"


def assert_identical_runs(run: Path, ref: Path) -> None:
    assert_same_weights(run / "last.pt", ref / "last.pt")
    assert_same_weights(run / "best.pt", ref / "best.pt")
    ours, theirs = load_checkpoint(run / "last.pt"), load_checkpoint(ref / "last.pt")
    for key in ("epoch", "global_step", "best_epoch", "best_val_loss"):
        assert ours["train_state"][key] == theirs["train_state"][key], key
    for ha, hb in zip(ours["train_state"]["history"], theirs["train_state"]["history"],
                      strict=True):
        assert (ha["train_loss"], ha["val_loss"]) == (hb["train_loss"], hb["val_loss"])


def test_sigkill_at_random_moments_then_resume_is_bit_exact(reference, zygote, tmp_path: Path):
    data, finished = reference
    run = tmp_path / "run"
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    log = []  # (what we aimed at, what happened) for the failure message
    # Each entry: how this process is killed. "write" = the moment a checkpoint temp file
    # appears (the process is inside save_checkpoint, between mkstemp and the rename).
    t0 = time.monotonic()
    plan = ["after-first-checkpoint", "write", "mid-epoch", "write", "from-start"]
    epochs_seen = 0
    write_kills_confirmed = 0
    for i, how in enumerate(plan):
        before = inode(run / "last.pt")
        args = train_args(data, run) + (["--resume"] if i else [])
        proc = zygote.start(*args)
        if how == "after-first-checkpoint":
            assert wait_until(lambda: (run / "last.pt").exists(), proc), proc.wait()
            time.sleep(rng.uniform(0.0, 0.4))
        elif how == "write":
            assert wait_until(lambda: bool(checkpoint_temps(run)), proc), proc.wait()
        elif how == "mid-epoch":
            assert wait_until(lambda b=before: inode(run / "last.pt") != b, proc), proc.wait()
            time.sleep(rng.uniform(0.02, 0.3))
        else:  # anywhere: during data loading, model building or training
            time.sleep(rng.uniform(0.0, 1.5))
        assert proc.alive(), f"kill {i} ({how}) came too late: {proc.wait()}"
        proc.signal(signal.SIGKILL)
        assert proc.wait().returncode == -signal.SIGKILL
        left = checkpoint_temps(run)
        if how == "write" and left:
            write_kills_confirmed += 1  # the temp file outlived the process: killed mid-write
        # last.pt is never corrupt and never goes back in time
        ckpt = load_checkpoint(run / "last.pt")
        epoch = ckpt["train_state"]["epoch"]
        assert ckpt["train_state"]["step_in_epoch"] == 0  # SIGKILL saves nothing mid-epoch
        assert epoch >= epochs_seen
        if (run / "best.pt").exists():
            load_checkpoint(run / "best.pt")
        log.append((how, epoch, [p.name for p in left], round(time.monotonic() - t0, 1)))
        epochs_seen = epoch
    assert epochs_seen < EPOCHS, log
    done = zygote.run(*train_args(data, run), "--resume")
    assert done.returncode == 0, done.stderr
    assert not temp_files(run), "temp files of killed writes were not cleaned up on resume"
    assert write_kills_confirmed >= 1, f"no kill landed inside a checkpoint write: {log}"
    assert_identical_runs(run, finished())


def test_ctrl_c_saves_mid_epoch_and_resume_is_bit_exact(reference, zygote, tmp_path: Path):
    data, finished = reference
    run = tmp_path / "run"
    rng = random.Random(int.from_bytes(os.urandom(4), "little"))
    mid_epoch_saves = 0
    for attempt in range(3):
        before = inode(run / "last.pt")
        proc = zygote.start(*train_args(data, run), *(["--resume"] if attempt else []))
        assert wait_until(lambda b=before: inode(run / "last.pt") not in (None, b), proc), \
            proc.wait()
        time.sleep(rng.uniform(0.02, 0.15))
        assert proc.alive()
        proc.signal(signal.SIGINT)
        res = proc.wait()
        assert res.returncode == 130, res.stderr
        assert "Traceback" not in res.stderr
        last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
        assert last.startswith("error: interrupted") and "checkpoint saved" in last, res.stderr
        assert f"Resume with: cnnlab train --out {run} --resume" in last
        state = load_checkpoint(run / "last.pt")["train_state"]
        assert state["epoch"] < EPOCHS
        if state["step_in_epoch"] > 0:
            mid_epoch_saves += 1
            assert load_checkpoint(run / "last.pt")["rng_state"] is not None
            break
    assert mid_epoch_saves == 1, "Ctrl-C never landed inside an epoch"
    # the printed command, as given, finishes the run
    done = zygote.run("train", "--out", run, "--resume")
    assert done.returncode == 0, done.stderr
    assert_identical_runs(run, finished())
