"""Class imbalance: --class-weights auto|explicit, --sampler balanced, --positive-class."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

import cnnlab
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.errors import CnnlabError
from cnnlab.settings import TrainConfig
from cnnlab.train.setup import class_weight_tensor

pytestmark = pytest.mark.slow  # full training runs: `make test` only


def _noisy(n0: int, n1: int, seed: int) -> ImageSet:
    """8x8 grey images: class 1 is 8 grey levels brighter on average; pixel noise std 40.

    The mean over 64 pixels separates the classes with d' = 1.6, so a model trained on a
    10:1 set learns to favour the majority (minority recall ~0.3 for the Bayes rule under that
    prior) while a balanced loss moves the boundary to the middle (recall ~0.8).
    """
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)]
    x = rng.normal(100 + 8 * y[:, None, None, None], 40, size=(len(y), 1, 8, 8))
    imgs = torch.from_numpy(np.clip(x, 0, 255).round().astype(np.uint8))
    return ImageSet(imgs, torch.from_numpy(y), ["common", "rare"], [str(i) for i in range(len(y))])


@pytest.fixture(scope="module")
def imbalanced() -> DataSplits:
    """Train 400:40 (10:1), val 100:10, test balanced 300:300 (recall is measured there)."""
    return DataSplits(_noisy(400, 40, 0), _noisy(100, 10, 1), _noisy(300, 300, 2), "noisy")


def _train(splits: DataSplits, tmp: Path, name: str, **kw: object) -> dict:
    res = cnnlab.train(splits, model="mlp", epochs=15, lr=3e-3, batch_size=32, seed=0,
                       out=str(tmp / name), verbose=False, report=False,
                       model_args={"hidden": 16, "layers": 1}, extra={"plots": False}, **kw)
    return res.metrics["test"]


def test_class_weights_auto_raises_minority_recall(imbalanced: DataSplits,
                                                   tmp_path: Path) -> None:
    plain = _train(imbalanced, tmp_path, "plain")
    auto = _train(imbalanced, tmp_path, "auto", class_weights="auto")
    r_plain = plain["per_class"]["rare"]["recall"]
    r_auto = auto["per_class"]["rare"]["recall"]
    assert r_auto > r_plain + 0.25, (r_plain, r_auto)
    assert r_auto > 0.4
    # the price: recall of the common class goes down, and both tables report it
    assert auto["per_class"]["common"]["recall"] < plain["per_class"]["common"]["recall"]


def test_explicit_weights_and_balanced_sampler_also_help(imbalanced: DataSplits,
                                                         tmp_path: Path) -> None:
    plain = _train(imbalanced, tmp_path, "plain")["per_class"]["rare"]["recall"]
    x10 = _train(imbalanced, tmp_path, "w10", class_weights=[1.0, 10.0])
    bal = _train(imbalanced, tmp_path, "bal", sampler="balanced")
    assert x10["per_class"]["rare"]["recall"] > plain + 0.25
    assert bal["per_class"]["rare"]["recall"] > plain + 0.25


def test_class_weight_values(imbalanced: DataSplits) -> None:
    auto = class_weight_tensor(TrainConfig(class_weights="auto"), imbalanced.train)
    assert torch.allclose(auto, torch.tensor([440 / (2 * 400), 440 / (2 * 40)]))
    assert class_weight_tensor(TrainConfig(class_weights="1,20"), imbalanced.train).tolist() == \
        [1.0, 20.0]
    with pytest.raises(CnnlabError, match="has 3 values for 2 classes"):
        class_weight_tensor(TrainConfig(class_weights=[1, 2, 3]), imbalanced.train)


def test_positive_class_end_to_end(tmp_path: Path) -> None:
    """cat/dog 40:8 from files; --positive-class cat makes precision/recall/F1 about cats."""
    rng = np.random.default_rng(0)
    for cls, n, level in (("cat", 40, 90), ("dog", 8, 150)):
        d = tmp_path / "pets" / cls
        d.mkdir(parents=True)
        for i in range(n):
            img = rng.normal(level, 30, size=(12, 12, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
    r = run_cli("train", str(tmp_path / "pets"), "--epochs", "3", "--image-size", "12",
                "--class-weights", "1,20", "--positive-class", "cat", "--no-report",
                "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for split in ("train", "val", "test"):
        assert m[split]["average"] == "binary (positive class: cat)"
        assert m[split]["recall"] == pytest.approx(m[split]["per_class"]["cat"]["recall"])
        assert m[split]["precision"] == pytest.approx(m[split]["per_class"]["cat"]["precision"])
        assert set(m[split]["per_class_accuracy"]) == {"cat", "dog"}
    e = run_cli("evaluate", "-w", str(tmp_path / "run" / "best.pt"), "--positive-class", "dog",
                "--json")
    assert e.returncode == 0, e.stderr
    got = json.loads(e.stdout)["test"]
    assert got["average"] == "binary (positive class: dog)"
    assert got["recall"] == pytest.approx(got["per_class"]["dog"]["recall"])
    # a class the model does not have is refused as train refuses it (evaluate used to
    # ignore it and report about the second class)
    e = run_cli("evaluate", "-w", str(tmp_path / "run" / "best.pt"), "--positive-class", "dgo")
    assert e.returncode == 2 and e.stderr.strip() == (
        "error: --positive-class 'dgo': not a class of the model (cat, dog)")
    bad = run_cli("train", str(tmp_path / "pets"), "--epochs", "1", "--image-size", "12",
                  "--class-weights", "1,2,3", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "3 values for 2 classes" in bad.stderr
