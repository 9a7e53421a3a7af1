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
from clitools import popen_cli
from conftest import digits_arrays

from cnnlab.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

EPOCHS = 10


def train_args(data: Path, out: Path) -> list:
    """The same deterministic run for the reference and the interrupted copies."""
    return ["train", data, "--model", "mlp", "--model-arg", "hidden=512", "--model-arg",
            "dropout=0.2", "--epochs", str(EPOCHS), "--batch-size", "16", "--seed", "3",
            "--deterministic", "--no-report", "--log-every", "1", "--out", out]


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
    for key in ("epoch", "global_step", "best_epoch"):
        assert ours["train_state"][key] == theirs["train_state"][key], key
    # early stopping's own counts (best value, epochs since) continue as if never stopped
    assert ours["callback_state"]["early_stopping"] == theirs["callback_state"]["early_stopping"]
    for ha, hb in zip(ours["train_state"]["history"], theirs["train_state"]["history"],
                      strict=True):
        assert (ha["train_loss"], ha["val_loss"]) == (hb["train_loss"], hb["val_loss"])


def replay_seed() -> int:
    """The seed of this test run's random choices: $CNNLAB_TEST_SEED, else a fresh one (printed,
    so a failure can be replayed)."""
    seed = int(os.environ.get("CNNLAB_TEST_SEED") or int.from_bytes(os.urandom(4), "little"))
    print(f"interrupt test seed: {seed} (replay with CNNLAB_TEST_SEED={seed})")
    return seed


class Progress:
    """The (epoch, step) rows a run appends to steps.csv (`--log-every 1`) after `start`."""

    def __init__(self, run: Path) -> None:
        self.path = run / "steps.csv"
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def rows(self) -> list[tuple[int, int]]:
        """(epoch, global step) per step logged since this object was made (1-based epoch)."""
        try:
            with open(self.path, "rb") as fh:
                first = fh.readline().decode()
                if not first.endswith("\n"):  # created but its header not yet written
                    return []
                header = first.strip().split(",")
                fh.seek(max(self.offset, fh.tell()))
                text = fh.read().decode(errors="replace")
        except (FileNotFoundError, ValueError):
            return []
        ie, istep = header.index("epoch"), header.index("step")
        out = []
        for line in text.splitlines()[:-1] if not text.endswith("\n") else text.splitlines():
            cells = line.split(",")
            if len(cells) == len(header) and cells[ie].isdigit() and cells[istep].isdigit():
                out.append((int(cells[ie]), int(cells[istep])))
        return out

    def in_epoch(self, epoch: int) -> int:
        """Steps logged in `epoch` (1-based) or later."""
        return sum(1 for e, _ in self.rows() if e >= epoch)


def completed_epochs(run: Path) -> int:
    """Epochs in the run's last checkpoint (0 before the first one)."""
    if not (run / "last.pt").exists():
        return 0
    return load_checkpoint(run / "last.pt")["train_state"]["epoch"]


def catch_inside_write(proc, run: Path, give_up) -> bool:  # noqa: ANN001
    """Stop `proc` while it is inside a checkpoint write (a temp file exists while it is
    stopped); True when caught, False when `give_up()` came first. The process stays stopped
    (SIGSTOP) when caught, so the kill that follows lands inside the write by construction."""
    while proc.alive() and not give_up():
        if checkpoint_temps(run):
            proc.signal(signal.SIGSTOP)
            if checkpoint_temps(run):
                return True
            proc.signal(signal.SIGCONT)  # the write finished between the two looks
        time.sleep(0.0005)
    return False


def test_sigkill_at_random_moments_then_resume_is_bit_exact(reference, zygote, tmp_path: Path):
    # Every kill is placed by the run's own progress (steps.csv rows, checkpoint temp files),
    # never by wall-clock time, so each kill costs a bounded number of epochs: at most
    # 1 + 2 + 1 + 2 + 0 = 6 of the 10, whatever the speed of the machine.
    data, finished = reference
    run = tmp_path / "run"
    rng = random.Random(replay_seed())
    log = []  # (how, planned step, epochs in last.pt, temp files left) for the failure message
    plan = ["after-first-checkpoint", "write", "mid-epoch", "write", "from-start"]
    epochs_seen = 0
    write_kills_confirmed = 0
    for i, how in enumerate(plan):
        start = completed_epochs(run)  # the epoch this process resumes after
        progress = Progress(run)
        args = train_args(data, run) + (["--resume"] if i else [])
        proc = zygote.start(*args)
        k = rng.randint(0, 10)  # steps into the epoch (an epoch has 23)
        if how == "after-first-checkpoint":  # epoch 1 saved, k steps into epoch 2
            assert wait_until(lambda p=progress, k=k: p.in_epoch(2) > k, proc), proc.wait()
        elif how == "write":  # inside a checkpoint write of the next two epochs, if one is seen
            write_kills_confirmed += catch_inside_write(
                proc, run, lambda p=progress, s=start: p.in_epoch(s + 3) > 0)
        elif how == "mid-epoch":  # one more epoch saved, then k steps into the next
            assert wait_until(lambda p=progress, s=start, k=k: p.in_epoch(s + 2) > k, proc), \
                proc.wait()
        elif k % 3:  # k steps after the resumed start
            assert wait_until(lambda p=progress, k=k: len(p.rows()) > k, proc), proc.wait()
        # else: at once, while the process loads the data and builds the model
        assert proc.alive(), f"kill {i} ({how}) came too late: {proc.wait()}"
        proc.signal(signal.SIGKILL)  # also ends a process stopped inside a write
        assert proc.wait().returncode == -signal.SIGKILL
        left = checkpoint_temps(run)
        # last.pt is never corrupt and never goes back in time
        ckpt = load_checkpoint(run / "last.pt")
        epoch = ckpt["train_state"]["epoch"]
        assert ckpt["train_state"]["step_in_epoch"] == 0  # SIGKILL saves nothing mid-epoch
        assert epoch >= epochs_seen
        if (run / "best.pt").exists():
            load_checkpoint(run / "best.pt")
        log.append((how, k, epoch, [p.name for p in left]))
        epochs_seen = epoch
    print("kills (how, k, epochs in last.pt, temp files left):", log)
    assert epochs_seen < EPOCHS, log
    done = zygote.run(*train_args(data, run), "--resume")
    assert done.returncode == 0, done.stderr
    assert not temp_files(run), "temp files of killed writes were not cleaned up on resume"
    assert write_kills_confirmed >= 1, f"no kill landed inside a checkpoint write: {log}"
    assert_identical_runs(run, finished())


def test_ctrl_c_saves_mid_epoch_and_resume_is_bit_exact(reference, zygote, tmp_path: Path):
    data, finished = reference
    run = tmp_path / "run"
    rng = random.Random(replay_seed())
    # Ctrl-C k steps into the epoch after the first one this process saves (k < 23 steps):
    # the save is mid-epoch by construction, and the run is far from its last epoch.
    progress = Progress(run)
    proc = zygote.start(*train_args(data, run))
    k = rng.randint(1, 15)
    assert wait_until(lambda: progress.in_epoch(2) >= k, proc), proc.wait()
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
    assert state["step_in_epoch"] > 0, "Ctrl-C did not land inside an epoch"
    assert load_checkpoint(run / "last.pt")["rng_state"] is not None
    # the printed command, as given, finishes the run
    done = zygote.run("train", "--out", run, "--resume")
    assert done.returncode == 0, done.stderr
    assert_identical_runs(run, finished())


def test_a_run_started_with_ctrl_c_ignored_trains_on(reference, zygote, tmp_path: Path):
    # `nohup cnnlab train ...` or `cnnlab train ... &` in a script: SIGINT stays ignored, as in
    # any Python program, instead of stopping the run
    data, _ = reference
    run = tmp_path / "run"
    progress = Progress(run)
    proc = zygote.start(*train_args(data, run), ignore_sigint=True)
    assert wait_until(lambda: progress.in_epoch(2) >= 1, proc), proc.wait()
    proc.signal(signal.SIGINT)
    res = proc.wait()
    assert res.returncode == 0, res.stderr
    assert "interrupted" not in res.stderr
    assert completed_epochs(run) == EPOCHS
