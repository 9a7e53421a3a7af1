"""--recipe fast picks its own learning rate (a range test on the run's Trainer) and its
augmentation and regularisation from the data; every explicit setting and --recipe plain win;
a resumed run reuses the recorded choices and continues bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.checkpoint import load_checkpoint
from cnnlab.data import load_data
from cnnlab.io import read_yaml
from cnnlab.settings import resolve
from cnnlab.train import autorecipe
from cnnlab.train.callbacks import Callback
from tests.conftest import pattern_images

MLP = {"model": "mlp", "model_args": {"hidden": 32, "layers": 1}, "report": False,
       "num_threads": 1, "precision": "32", "seed": 1}


@pytest.fixture(scope="module")
def digits():  # noqa: ANN201
    return load_data(None)


@pytest.fixture(scope="module")
def patterns(tmp_path_factory):  # noqa: ANN001, ANN201
    """An easy 16x16 RGB set of 3 classes: another kind of data than the 8x8 grey digits."""
    folder = tmp_path_factory.mktemp("pat")
    x, y = pattern_images(120, size=16, classes=3, seed=3, rgb=True)
    np.save(folder / "pat_images.npy", x)
    np.save(folder / "pat_labels.npy", y)
    return load_data(str(folder))


def _resolved(run_dir: Path) -> dict:
    return read_yaml(run_dir / "config.yaml")["resolved"]


def test_fast_picks_its_lr_by_a_range_test_and_records_it(digits, patterns, tmp_path, capsys):
    # batches of 16: 136 steps, long enough for a 27-step test (a fifth of the run)
    a = cnnlab.train(digits, **MLP, recipe="fast", epochs=2, batch_size=16,
                     out=str(tmp_path / "a"))
    out = capsys.readouterr().err
    rec = _resolved(a.run_dir)
    lr = rec["recipe"]["lr"]
    assert rec["lr"] == lr == a.resolved["lr"]
    test = rec["recipe"]["lr_test"]
    assert 20 <= test["steps"] <= 100 and test["seconds"] > 0
    assert test["suggested"] is not None
    assert read_yaml(a.run_dir / "config.yaml")["lr"] is None  # as asked: not given
    assert json.loads((a.run_dir / "metrics.json").read_text())["resolved"]["recipe"]["lr"] == lr
    assert f"recipe: lr {lr:.3g}" in out and "-step range test" in out
    assert out.count("recipe: lr") == 1
    # the optimizer really trained with it: the one-cycle peak of the first epochs
    ckpt = load_checkpoint(a.run_dir / "last.pt")
    assert ckpt["optimizer_state"]["param_groups"][0]["initial_lr"] == pytest.approx(lr)
    # other data, another curve, another rate
    b = cnnlab.train(patterns, **MLP, recipe="fast", epochs=10, batch_size=8,
                     out=str(tmp_path / "b"), verbose=False)
    assert _resolved(b.run_dir)["recipe"]["lr_test"]["steps"] >= 20
    # (the rate itself is kept within [2, 4] x the usual one, so two sets may share it)
    assert _resolved(b.run_dir)["recipe"]["lr_test"]["suggested"] != test["suggested"]
    # deterministic with the seed: the same data and seed choose the same rate
    c = cnnlab.train(digits, **MLP, recipe="fast", epochs=2, batch_size=16,
                     out=str(tmp_path / "c"), verbose=False)
    assert _resolved(c.run_dir)["recipe"]["lr"] == lr


def test_explicit_lr_and_settings_skip_the_recipes_choices(digits, tmp_path, monkeypatch):
    def no_test(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the range test ran although --lr was given")

    monkeypatch.setattr(autorecipe, "range_test", no_test)
    r = cnnlab.train(digits, **MLP, recipe="fast", epochs=2, lr=0.02, ema=None,
                     augment="hflip", out=str(tmp_path / "a"), verbose=False)
    rec = _resolved(r.run_dir)
    assert rec["lr"] == 0.02 and "lr" not in rec["recipe"] and "lr_test" not in rec["recipe"]
    assert set(rec["recipe"]) - {"why"} == {"label_smoothing", "mixup"}
    cfg = read_yaml(r.run_dir / "config.yaml")
    assert (cfg["augment"], cfg["ema"]) == ("hflip", None)
    # --recipe plain: nothing is chosen, the loop as it always was
    p = cnnlab.train(digits, **MLP, recipe="plain", epochs=1, out=str(tmp_path / "p"),
                     verbose=False)
    assert "recipe" not in _resolved(p.run_dir)


def test_data_choices_scale_with_the_data_and_the_epochs():
    def splits(channels: int, side: int, n: int) -> SimpleNamespace:
        return SimpleNamespace(train=_Sized(channels, (side, side), n))

    def choose(split: SimpleNamespace, freeze: str = "none", **kw: object) -> dict:
        cfg = resolve({"recipe": "fast", **kw})
        cfg.freeze = freeze
        return autorecipe.data_choices(cfg, split)[0]

    grey = splits(1, 28, 6000)
    assert choose(grey, epochs=8)["augment"] is None  # grey letters, few epochs: none
    assert choose(grey, epochs=12)["augment"] == "crop=1,rotate=10"  # shifts of 1/16 side
    assert choose(splits(1, 64, 6000), epochs=12)["augment"] == "crop=4,rotate=10"
    assert choose(splits(1, 8, 1000), epochs=30)["augment"] is None  # 8x8 digits: never
    assert choose(grey, epochs=30)["mixup"] == 0.2  # long runs on 5k+ images
    assert choose(grey, epochs=30)["label_smoothing"] == 0.0  # mixup softens targets already
    assert choose(grey, epochs=8)["mixup"] == 0.0 and choose(grey, epochs=8)["ema"] == 0.99
    assert choose(grey, epochs=8)["label_smoothing"] == 0.1
    assert choose(splits(3, 32, 5000), epochs=6)["augment"] is None  # short runs: no flip either
    assert choose(splits(3, 32, 5000), epochs=10)["augment"] == "hflip,crop=2"
    assert choose(splits(3, 32, 5000), epochs=40)["augment"] == "hflip,crop=2,trivialaugment"
    assert choose(splits(3, 224, 240), epochs=10)["augment"] == "hflip,rrc=0.35"
    assert choose(splits(3, 224, 240), epochs=5)["augment"] is None  # from scratch: 10 epochs
    assert choose(splits(3, 224, 240), epochs=5, model="efficientnet-lite0",
                  pretrained=True)["augment"] == "hflip,rrc=0.35"
    frozen = choose(splits(3, 224, 240), epochs=10, freeze="all")
    assert frozen["augment"] is None  # keeps the feature cache
    assert frozen["label_smoothing"] == 0.0  # a head on fixed features
    assert choose(splits(3, 224, 240), epochs=10)["ema"] is None  # 40 steps: too few


class _Sized:
    """A stand-in training split: channels, image size and a length."""

    def __init__(self, channels: int, image_size: tuple[int, int], n: int) -> None:
        self.channels, self.image_size, self._n = channels, image_size, n

    def __len__(self) -> int:
        return self._n


class StopAfter(Callback):
    """Raise at the end of epoch `n`, after the checkpoint of that epoch is written."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, trainer, row) -> None:  # noqa: ANN001
        if trainer.state.epoch == self.n:
            raise KeyboardInterrupt


def test_resume_reuses_the_recorded_lr_and_continues_bit_for_bit(digits, tmp_path,
                                                                   monkeypatch):
    kw = dict(**MLP, recipe="fast", epochs=3, batch_size=16)  # 204 steps: a range test
    whole = cnnlab.train(digits, **kw, out=str(tmp_path / "whole"), verbose=False)
    with pytest.raises(KeyboardInterrupt):
        cnnlab.train(digits, **kw, out=str(tmp_path / "cut"), verbose=False,
                     callbacks=[StopAfter(2)])
    chosen = _resolved(tmp_path / "cut")["recipe"]["lr"]
    assert _resolved(tmp_path / "cut")["recipe"]["lr_test"]["steps"] >= 20

    def no_test(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a resumed run ran the range test again")

    monkeypatch.setattr(autorecipe, "range_test", no_test)
    resumed = cnnlab.train(digits, out=str(tmp_path / "cut"), resume=True, verbose=False)
    assert resumed.resolved["lr"] == chosen == _resolved(whole.run_dir)["recipe"]["lr"]
    a = load_checkpoint(whole.run_dir / "last.pt")["model_state"]
    b = load_checkpoint(resumed.run_dir / "last.pt")["model_state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fast_alone_matches_or_beats_plain_at_a_small_budget(digits, tmp_path):
    # The default cnn on the 8x8 digits, 4 epochs: the recipe's own rate against plain's.
    kw = dict(model="cnn", report=False, num_threads=1, precision="32", seed=0, epochs=4)
    plain = cnnlab.train(digits, **kw, out=str(tmp_path / "p"), verbose=False)
    fast = cnnlab.train(digits, **kw, recipe="fast", out=str(tmp_path / "f"), verbose=False)
    assert fast.metrics["test"]["accuracy"] >= plain.metrics["test"]["accuracy"]


def test_the_report_shows_what_the_recipe_chose(digits, tmp_path):
    r = cnnlab.train(digits, **{**MLP, "report": True}, recipe="fast", epochs=1,
                     out=str(tmp_path / "r"), verbose=False)
    html = (r.run_dir / "report.html").read_text()
    # one epoch of 17 steps: too short to test, the rule's rate
    assert "chosen by the recipe: too short a run to test" in html.replace("&#x27;", "'")
    assert "recipe fast chose" in html and "label_smoothing 0.1" in html
    t = cnnlab.train(digits, **{**MLP, "report": True}, recipe="fast", epochs=2, batch_size=16,
                     out=str(tmp_path / "t"), verbose=False)
    html = (t.run_dir / "report.html").read_text().replace("&#x27;", "'")
    assert "chosen by the recipe's range test" in html


def test_a_run_too_short_to_test_gets_the_ceiling_without_a_test(digits, tmp_path, capsys,
                                                                  monkeypatch):
    def no_test(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a 34-step run paid for a 20-step range test")

    monkeypatch.setattr(autorecipe, "range_test", no_test)
    r = cnnlab.train(digits, **MLP, recipe="fast", epochs=2, out=str(tmp_path / "s"))
    out = capsys.readouterr().err
    rec = _resolved(r.run_dir)
    usual = 0.003  # AdamW's
    assert rec["lr"] == rec["recipe"]["lr"] == pytest.approx(autorecipe.PEAK_SHORT * usual)
    assert "lr_test" not in rec["recipe"]
    assert "too short for a range test" in out and "recipe: lr 0.012" in out
    ckpt = load_checkpoint(r.run_dir / "last.pt")
    assert ckpt["optimizer_state"]["param_groups"][0]["initial_lr"] == pytest.approx(0.012)
    # weights from an earlier run fine-tuned: the gentler 3x
    t = cnnlab.train(digits, **MLP, recipe="fast", epochs=2, init_from=str(r.run_dir / "best.pt"),
                     out=str(tmp_path / "t"), verbose=False)
    assert _resolved(t.run_dir)["recipe"]["lr"] == pytest.approx(
        autorecipe.PEAK_SHORT_TUNED * usual)
    assert "fine-tuned" in _resolved(t.run_dir)["recipe"]["why"]["lr"]
