"""`cnnlab inspect model|conv|data` through the real command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from PIL import Image


def test_inspect_model_table_shows_the_hand_formulas(cli) -> None:
    code, out, err = cli("inspect", "model", "eecs553-cnn", "--num-classes", "5")
    assert code == 0, err
    for text in ("(3·5·5+1)·16 = 1,216", "(64·5·5+1)·128 = 204,928", "(512+1)·64 = 32,832",
                 "(64+1)·5 = 325", "total parameters: 303,397", "16x16x16", "128x2x2"):
        assert text in out, text
    assert "saved weights" in out


@pytest.mark.slow
def test_inspect_model_json_and_max_size(cli) -> None:
    code, out, err = cli("inspect", "model", "eecs445-target", "--num-classes", "2", "--json",
                         "--max-size", "1MB")
    assert code == 0, err
    d = json.loads(out)
    assert d["total_params"] == 39_754
    assert [row["params"] for row in d["layers"] if row["params"]] == [1216, 25664, 12808, 66]
    assert d["layers"][0]["formula"] == "(3·5·5+1)·16 = 1,216"
    assert d["layers"][0]["output_shape"] == [16, 32, 32]
    assert 39_754 * 4 < d["saved_bytes"] < 39_754 * 4 + 20_000
    assert d["within_max_size"] is True

    big = run_cli("inspect", "model", "eecs553-cnn", "--max-size", "1MB")
    assert big.returncode == 1
    lines = [ln for ln in big.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "1MB" in lines[0]

    code, out, err = cli("inspect", "model", "cnn", "--channels", "1", "--image-size", "28",
                         "--max-size", "1MB", "--json")
    assert code == 0, err
    assert json.loads(out)["saved_bytes"] < 1_000_000
    code, out, err = cli("inspect", "model", "eecs553-cnn", "--max-size", "1.5MB")
    assert code == 0 and "(3·5·5+1)·16 = 1,216" in out

    code, _, err = cli("inspect", "model", "no-such-net")
    assert code == 2 and "unknown model" in err and "Traceback" not in err


def test_inspect_conv_reproduces_the_comp6721_exercise(cli) -> None:
    image, kernel = "-1 0 1; 2 3 4; 5 6 7; 8 9 10", "2 1; 0 -1"
    code, out, err = cli("inspect", "conv", "--matrix", image, "--kernel", kernel, "--pool",
                         "max", "--pool-stride", "1", "--json")
    assert code == 0, err
    m = json.loads(out)["matrix"]
    assert m["activation"] == [[0, 0], [1, 3], [7, 9]]
    assert m["pooled"] == [[3], [9]]
    code, out, err = cli("inspect", "conv", "--matrix", image, "--kernel", kernel,
                         "--padding", "1", "--pool", "avg", "--json", "--stack",
                         "conv:16:5:2:2,conv:32:5:2:2,conv:64:5:2:2,conv:128:5:2:2,fc:64,fc:5",
                         "--input-size", "32")
    assert code == 0, err
    d = json.loads(out)
    assert d["matrix"]["activation"] == [[1, 0, 0, 0], [0, 0, 0, 2], [0, 1, 3, 8],
                                         [0, 7, 9, 14], [8, 25, 28, 20]]
    assert d["matrix"]["pooled"] == [[0.25, 0.5], [2, 8.5]]
    assert [row["output"] for row in d["stack"]["layers"]] == [[16, 16, 16], [32, 8, 8],
                                                                [64, 4, 4], [128, 2, 2], [64],
                                                                [5]]
    assert d["stack"]["total_params"] == 303_397
    code, out, _ = cli("inspect", "conv", "--stack", "conv:8:3,pool:2", "--input-size", "9",
                       "--channels", "1")
    assert code == 0 and "8x7x7" in out and "8x3x3" in out and "(1·3·3+1)·8 = 80" in out
    code, out, _ = cli("inspect", "conv", "--matrix", image, "--kernel", kernel)
    assert code == 0 and "after 2x2 max pooling, stride 2 (1x1):\n3" in out
    code, _, err = cli("inspect", "conv", "--stack", "conv:8")
    assert code == 2 and "conv:OUT:K" in err


def _imbalanced_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    sizes = {"ants": (40, 30), "bees": (20, 50)}
    for part, counts in (("train", {"ants": 9, "bees": 3}), ("val", {"ants": 4, "bees": 2})):
        for cls, n in counts.items():
            d = root / part / cls
            d.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[cls]
                val = 200 if cls == "ants" else 50
                img = np.full((h, w, 3), val, dtype=np.uint8)
                img[..., 0] = rng.integers(0, 255)
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def test_inspect_data_summary_and_figures(tmp_path: Path, cli) -> None:
    data = _imbalanced_folder(tmp_path / "hym")
    out = tmp_path / "inspect"
    code, stdout, err = cli("inspect", "data", str(data), "--json", "--out", str(out),
                            "--image-size", "16")
    assert code == 0, err
    s = json.loads(stdout)
    assert s["classes"] == ["ants", "bees"]
    assert s["counts"] == {"train": [9, 3], "val": [4, 2]}
    assert s["imbalance_ratio"]["train"] == 3.0
    assert s["image_size"]["min"] == [20, 30] and s["image_size"]["max"] == [40, 50]
    b = s["baselines"]
    assert b["split"] == "val" and b["random"] == 0.5
    assert abs(b["majority"] - 4 / 6) < 1e-9 and b["majority_class"] == "ants"
    # Green and blue channels hold 200 (ants) or 50 (bees): the train mean is the weighted mean.
    assert abs(s["train_mean"][1] - (9 * 200 + 3 * 50) / 12 / 255) < 1e-4
    for name in ("class_counts.png", "samples.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    with Image.open(out / "samples.png") as im:
        assert im.size[0] > 100

    code, stdout, err = cli("inspect", "data", str(data))
    assert code == 0, err
    flat = " ".join(stdout.split())  # rich wraps to the terminal's width, which varies by runner
    assert "imbalance ratio" in flat and "majority class (ants) 0.6667" in flat
    code, _, err = cli("inspect", "data", str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err
