"""Training faults: a full disk while saving, NaN/inf loss, exploding gradients, out of memory.

The CLI cases are real `cnnlab train` processes (forked from a pre-imported interpreter, see
clitools.Zygote) with real kernel limits: RLIMIT_FSIZE makes writes fail with EFBIG, RLIMIT_AS
makes allocations fail.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import assert_one_line_error
from conftest import digits_arrays

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data import load_data
from cnnlab.errors import TrainingError
from cnnlab.io import write_error_reason
from cnnlab.settings import TrainConfig
from cnnlab.train.trainer import Trainer

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only



@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    x, y = digits_arrays(600)
    path = tmp_path_factory.mktemp("faults") / "digits.npz"
    np.savez(path, x=x, y=y)
    return path


def small(data: Path, out: Path, *extra: str) -> list:
    return ["train", data, "--model", "mlp", "--model-arg", "hidden=512", "--batch-size", "32",
            "--no-report", "--out", out, *extra]


def test_full_disk_while_saving_keeps_previous_checkpoint(zygote, digits_npz, tmp_path: Path):
    run = tmp_path / "run"
    first = zygote.run(*small(digits_npz, run, "--epochs", "2"))
    assert first.returncode == 0, first.stderr
    before = {n: (run / n).read_bytes() for n in ("last.pt", "best.pt")}
    assert len(before["best.pt"]) > 1_000_000 and len(before["last.pt"]) > 1_000_000
    # Resume under a 1 MB file size limit: config.yaml fits, no checkpoint does.
    res = zygote.run(*small(digits_npz, run, "--epochs", "4", "--resume"), fsize=1_000_000)
    line = assert_one_line_error(res, "could not save checkpoint", "file size limit",
                                 "previous checkpoint is intact", after_progress=True)
    assert str(run) in line
    for name, data in before.items():
        assert (run / name).read_bytes() == data, f"{name} changed"
    assert load_checkpoint(run / "last.pt")["train_state"]["epoch"] == 2
    assert not list(run.glob(".*.tmp")), "temp file of the failed write left behind"
    # and once there is room again, the run simply continues
    again = zygote.run(*small(digits_npz, run, "--epochs", "3", "--resume"))
    assert again.returncode == 0, again.stderr
    assert load_checkpoint(run / "last.pt")["train_state"]["epoch"] == 3


def test_nan_loss_from_huge_lr_stops_with_advice(zygote, digits_npz, tmp_path: Path):
    run = tmp_path / "run"
    res = zygote.run(*small(digits_npz, run, "--epochs", "3", "--optimizer", "sgd",
                            "--lr", "1e12"))
    line = assert_one_line_error(res, "step", "lower learning rate", "--lr 1e+11",
                                 after_progress=True)
    assert "nan" in line.lower() or "inf" in line.lower()
    # whatever was saved before the divergence is a good (finite) checkpoint
    if (run / "last.pt").exists():
        state = load_checkpoint(run / "last.pt")["model_state"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
        assert "last good checkpoint" in line
    else:
        assert "no checkpoint was saved yet" in line


def _trainer(tmp_path: Path, **cfg: object) -> Trainer:
    splits = load_data(None)
    base = dict(epochs=3, batch_size=128, model="mlp", model_args={"hidden": 32}, report=False,
                seed=1, num_threads=1, schedule="none")
    c = TrainConfig(**{**base, **cfg}, out=str(tmp_path))
    return Trainer(c, splits, tmp_path, verbose=False)


def test_divergence_keeps_last_good_checkpoint(tmp_path: Path):
    t = _trainer(tmp_path, optimizer="sgd", lr=0.05)
    t.fit(stop_after=1)
    good = (tmp_path / "last.pt").read_bytes()
    for g in t.optimizer.param_groups:  # the run now explodes in epoch 2
        g["lr"] = g["initial_lr"] = 1e15
    with pytest.raises(TrainingError) as info:
        t.fit()
    msg = str(info.value)
    assert "epoch 2" in msg and "step" in msg and "lower learning rate" in msg
    assert f"last good checkpoint {tmp_path / 'last.pt'} (epoch 1) is kept" in msg
    assert "\n" not in msg
    assert (tmp_path / "last.pt").read_bytes() == good
    state = load_checkpoint(tmp_path / "last.pt")["model_state"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_clip_grad_bounds_every_update(tmp_path: Path):
    # plain SGD, no momentum: each step moves the weights by lr * (clipped) gradient
    t = _trainer(tmp_path, optimizer="sgd", momentum=0.0, lr=0.5, clip_grad=1e-4, epochs=1)
    w0 = torch.cat([p.detach().flatten().clone() for p in t.model.parameters()])
    t.fit()
    w1 = torch.cat([p.detach().flatten() for p in t.model.parameters()])
    steps = t.state.global_step
    assert steps > 1
    assert float((w1 - w0).norm()) <= steps * 0.5 * 1e-4 * 1.001
    assert float((w1 - w0).norm()) > 0


def test_out_of_memory_on_a_batch_names_the_batch_size_to_try(zygote, digits_npz,
                                                              tmp_path: Path):
    # 64x64 images, a 32-wide CNN, one batch of 480: the first forward pass needs ~1.5 GB of
    # activations; the process may map only 400 MB more than it has at start.
    res = zygote.run("train", digits_npz, "--image-size", "64", "--batch-size", "480",
                     "--precision", "32",  # bf16 autocast halves activations: they would fit
                     "--epochs", "1", "--no-report", "--out", tmp_path / "run",
                     as_extra=400 * 2**20)
    line = assert_one_line_error(res, "out of memory", "batch of 480", "--batch-size 240",
                                 after_progress=True)
    assert "epoch 1, step 1" in line


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_disk_full_errors_are_named_plainly():
    # /dev/full fails every write with the kernel's real ENOSPC
    with pytest.raises(OSError) as info, open("/dev/full", "wb", buffering=0) as fh:
        fh.write(b"x" * 4096)
    assert info.value.errno == errno.ENOSPC
    assert "disk is full" in write_error_reason(info.value)
    assert "quota" in write_error_reason(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert "size limit" in write_error_reason(OSError(errno.EFBIG, "File too large"))
