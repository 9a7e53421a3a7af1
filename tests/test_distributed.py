"""torchrun + DistributedDataParallel: 2 real CPU processes (gloo) match a single process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digits_arrays

import cnnlab
from cnnlab.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

# float32 (not the bf16 that --precision auto picks on some CPUs) and an MLP without
# BatchNorm or dropout: every rank computes exactly the single-process batch
# gradient (our loss scaling makes DDP's average the global mean even for uneven shares), so the
# only differences are float32 summation order: ~1e-7 per step. 1e-5 leaves room for 93 SGD
# steps of that while any real mismatch (a wrong shard, a missing reduction, a double-counted
# batch) moves the weights by >1e-3.
TOL = 1e-5
# A constant learning rate, so "2 epochs, then --resume to 3" equals "3 epochs" exactly.
SETTINGS = ["--model", "mlp", "--model-arg", "hidden=32", "--optimizer", "sgd", "--lr", "0.05",
            "--batch-size", "33", "--class-weights", "auto", "--schedule", "none",
            "--device", "cpu", "--precision", "32", "--no-report"]


def _npy_set(root: Path) -> Path:
    x, y = digits_arrays()
    root.mkdir()
    np.save(root / "digits_images.npy", x[:1000])
    np.save(root / "digits_labels.npy", y[:1000])
    np.save(root / "digits_dev_images.npy", x[1000:1300])
    np.save(root / "digits_dev_labels.npy", y[1000:1300])
    return root


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    # --standalone: a private rendezvous on a free localhost port, so parallel runs never clash.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", "2", "-m", "cnnlab", "train", *args],
                          capture_output=True, text=True, timeout=240, env=env)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process_and_resumes(tmp_path: Path):
    data = _npy_set(tmp_path / "npy")
    multi = tmp_path / "multi"
    # Two epochs under torchrun, then --resume to a third (rank 0 reads last.pt, shares it).
    first = _torchrun(str(data), *SETTINGS, "--epochs", "2", "--out", str(multi))
    assert first.returncode == 0, first.stderr[-3000:]
    ckpt_2 = load_checkpoint(multi / "last.pt")
    resumed = _torchrun(str(data), "--epochs", "3", "--out", str(multi), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    # Only rank 0 prints: one header and one line per epoch, not two.
    out = first.stdout + first.stderr
    assert out.count("cnnlab training mlp") == 1, out[-2000:]
    assert out.count("epoch   1/2") == 1 and out.count("epoch   2/2") == 1, out[-2000:]
    assert (resumed.stdout + resumed.stderr).count("epoch   3/3") == 1

    single = cnnlab.train(str(data), model="mlp", epochs=3, model_args={"hidden": 32},
                          optimizer="sgd", lr=0.05, batch_size=33, class_weights="auto",
                          schedule="none", device="cpu", precision="32", report=False,
                          verbose=False,
                          out=str(tmp_path / "one"))

    got = load_checkpoint(multi / "last.pt")
    ref = load_checkpoint(single.run_dir / "last.pt")
    assert got["train_state"]["epoch"] == 3 and got["train_state"]["global_step"] == 3 * 31
    diff = max(float((got["model_state"][k] - ref["model_state"][k]).abs().max())
               for k in ref["model_state"])
    assert diff < TOL, f"DDP weights differ from single-process by {diff}"
    # ... and training actually moved them (the comparison is not vacuous).
    moved = max(float((got["model_state"][k] - ckpt_2["model_state"][k]).abs().max())
                for k in ref["model_state"])
    assert moved > 1e-3
    # Reduced metrics (train loss/acc over both ranks, sharded val) equal the single run's.
    for a, b in zip(got["train_state"]["history"], ref["train_state"]["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=TOL)
        assert a["train_acc"] == pytest.approx(b["train_acc"], abs=1e-9)
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=TOL)
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=1e-9)
    # rank 0 wrote the complete run folder, exactly once (no second folder from rank 1)
    for name in ("config.yaml", "metrics.csv", "metrics.json", "best.pt", "predictions.csv"):
        assert (multi / name).is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["multi", "npy", "one"]
    assert torch.equal(got["model_state"]["mean"], ref["model_state"]["mean"])
