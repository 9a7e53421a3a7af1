"""Seed models take the arguments their homework varies, and such variants reload anywhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from cnnlab.errors import CnnlabError
from cnnlab.models import build_model


def _params(name: str, k: int, c: int, size: int, **args: object) -> int:
    return sum(p.numel() for p in build_model(name, k, c, size, **args).parameters())


@pytest.mark.parametrize("name,k,c,size,args,expected", [
    # EECS 445 2(f)iii: conv3 with 64 instead of 8 filters; the FC input grows with it
    ("eecs445-target", 2, 3, 64, {"conv3_filters": 64},
     (3 * 25 * 16 + 16) + (16 * 25 * 64 + 64) + (64 * 25 * 64 + 64) + (64 * 4 * 2 + 2)),
    ("eecs445-source", 8, 3, 64, {"conv3_filters": "64"},
     (3 * 25 * 16 + 16) + (16 * 25 * 64 + 64) + (64 * 25 * 64 + 64) + (64 * 4 * 8 + 8)),
    ("cs475-convnet", 6, 1, 28, {"channels": "16,32"},
     (1 * 9 * 16 + 16) + (16 * 9 * 32 + 32) + (32 * 6 + 6)),
    ("cs475-densenet", 6, 1, 28, {"hidden": 50}, (784 * 50 + 50) + (50 * 6 + 6)),
    ("cs475-densenet", 6, 1, 28, {"hidden_layer_width": 50}, (784 * 50 + 50) + (50 * 6 + 6)),
    ("comp6721-mlp", 10, 3, 32, {"hidden": 20},
     (3072 * 20 + 20) + 2 * (20 * 20 + 20) + (20 * 10 + 10)),
])
def test_model_args_change_the_parameter_count(name: str, k: int, c: int, size: int,
                                                args: dict, expected: int):
    assert _params(name, k, c, size, **args) == expected
    assert _params(name, k, c, size) != expected  # the default differs


def test_eecs445_default_is_the_seed():
    assert _params("eecs445-target", 2, 3, 64) == 39_754


@pytest.mark.parametrize("bad", [0, -3, 2.5, "many", True])
def test_bad_conv3_filters_is_one_line(bad: object):
    with pytest.raises(CnnlabError, match="conv3_filters must be a whole number"):
        build_model("eecs445-target", 2, 3, 64, conv3_filters=bad)


@pytest.mark.slow
def test_conv3_filters_trains_and_reloads_in_a_new_process(tmp_path: Path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    y = np.arange(24) % 2
    x[y == 1, :32] = 255  # a learnable difference
    np.save(tmp_path / "d_images.npy", x)
    np.save(tmp_path / "d_labels.npy", y)
    run = tmp_path / "run"
    res = run_cli("train", str(tmp_path), "--model", "eecs445-target", "--model-arg",
                  "conv3_filters=64", "--epochs", "1", "--out", str(run), "--no-report")
    assert res.returncode == 0, res.stderr
    script = ("import json, sys\n"
              "from cnnlab.evaluate.predictor import Predictor\n"
              "p = Predictor.load(sys.argv[1])\n"
              "print(json.dumps({'args': p.arch['args'], 'conv3': p.module.net.conv3.out_channels,"
              " 'params': sum(q.numel() for q in p.module.net.parameters())}))\n")
    done = subprocess.run([sys.executable, "-c", script, str(run / "best.pt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got == {"args": {"conv3_filters": 64}, "conv3": 64,
                   "params": _params("eecs445-target", 2, 3, 64, conv3_filters=64)}
    pred = run_cli("predict", "--weights", str(run / "best.pt"), str(tmp_path), "--output",
                   str(tmp_path / "p.csv"))
    assert pred.returncode == 0, pred.stderr
