"""Test-time augmentation averages exactly the named views; temperature scaling calibrates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli, write_image_folder

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.batches import to_float
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.calibration import ece, fit_temperature, reliability
from cnnlab.evaluate.predictor import Predictor
from cnnlab.models.record import rebuild
from cnnlab.models.tta import parse_tta, views
from cnnlab.settings import SettingsError, resolve


def _predictor(channels: int = 3) -> Predictor:
    torch.manual_seed(0)
    arch = {"name": "cnn", "args": {}, "num_classes": 4, "in_channels": channels,
            "image_size": 12}
    return Predictor(rebuild(arch), arch, ["a", "b", "c", "d"], {})


def _images(n: int = 10, channels: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, channels, 12, 12), generator=g, dtype=torch.uint8)


def _softmax(model: Predictor, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model.module(to_float(x)), 1)


def _shift(x: torch.Tensor, d: int) -> torch.Tensor:
    """Move by (d, d) pixels with the edge repeated: written independently of models/tta.py."""
    p = abs(d)
    padded = F.pad(x.float(), (p, p, p, p), mode="replicate")
    h, w = x.shape[-2:]
    return padded[..., p - d:p - d + h, p - d:p - d + w].to(x.dtype)


@pytest.mark.parametrize("channels", [1, 3])
def test_tta_averages_exactly_the_named_views(channels: int) -> None:
    model, x = _predictor(channels), _images(channels=channels)
    plain = _softmax(model, x)
    assert torch.allclose(torch.from_numpy(model.predict_proba(x)), plain, atol=1e-6)
    model.tta = "flip"
    want = (plain + _softmax(model, x.flip(3))) / 2
    got = torch.from_numpy(model.predict_proba(x))
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, plain, atol=1e-4)  # the mirror view really counted
    model.tta = "flip,shift"
    six = [v for img in (x, x.flip(3)) for v in (img, _shift(img, 1), _shift(img, -1))]
    want6 = sum(_softmax(model, v) for v in six) / 6
    assert torch.allclose(torch.from_numpy(model.predict_proba(x)), want6, atol=1e-6)
    model.tta = "vflip,shift=2"
    six = [v for img in (x, x.flip(2)) for v in (img, _shift(img, 2), _shift(img, -2))]
    want6 = sum(_softmax(model, v) for v in six) / 6
    assert torch.allclose(torch.from_numpy(model.predict_proba(x)), want6, atol=1e-6)


def test_tta_specs() -> None:
    assert parse_tta(" Flip , shift=2") == "flip,shift=2"
    assert parse_tta(None) == parse_tta("") == "none"
    assert [len(views(s)) for s in ("none", "flip", "shift", "flip,shift", "flip,vflip")] == \
        [1, 2, 3, 6, 4]
    with pytest.raises(CnnlabError, match="unknown view 'spin'"):
        parse_tta("flip,spin")
    with pytest.raises(CnnlabError, match="only shift takes a value"):
        parse_tta("flip=2")
    with pytest.raises(SettingsError, match="--tta"):
        resolve({"tta": "mirror"})
    assert resolve({"tta": "FLIP"}).tta == "flip"


def _overconfident(n: int = 3000, k: int = 5, scale: float = 10.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true label distribution, multiplied by `scale`."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, k, generator=g) * 1.5
    y = torch.multinomial(torch.softmax(z, 1), 1, generator=g).view(-1)
    return z * scale, y


def test_ece_by_hand() -> None:
    probs = np.array([[0.9, 0.1]] * 10)
    labels = np.array([0] * 5 + [1] * 5)  # 90% confident, right half the time
    assert ece(probs, labels) == pytest.approx(0.4)
    r = reliability(probs, labels)
    assert r["count"][13] == 10 and r["accuracy"][13] == pytest.approx(0.5)  # (0.867, 0.933]
    assert ece(np.array([[0.25, 0.75]] * 4), np.array([1, 1, 1, 0])) == pytest.approx(0.0)


def test_temperature_scaling_lowers_ece_of_an_overconfident_model() -> None:
    logits, y = _overconfident()
    t = fit_temperature(logits, y)
    assert 8.5 < t < 11.5  # undoes the factor 10
    before = torch.softmax(logits, 1).numpy()
    after = torch.softmax(logits / t, 1).numpy()
    assert ece(after, y.numpy()) < 0.03 < 0.15 < ece(before, y.numpy())
    assert (after.argmax(1) == before.argmax(1)).all()  # predictions never change
    # over views: the temperature is fitted to the averaged probabilities
    views2 = torch.stack([logits, logits + torch.randn_like(logits)])
    t2 = fit_temperature(views2, y)
    assert t2 > 5


@pytest.mark.slow
def test_train_with_calibrate_and_tta_saves_and_applies_the_temperature(tmp_path: Path) -> None:
    import cnnlab

    data = write_image_folder(tmp_path / "imgs", n_per_class=12, size=12)
    out = tmp_path / "run"
    res = cnnlab.train(str(data), model="cnn", epochs=3, image_size=12, out=str(out),
                       calibrate=True, tta="flip", verbose=False, report=False,
                       extra={"plots": False})
    m = json.loads((out / "metrics.json").read_text())
    cal = m["calibration"]
    t = cal["temperature"]
    assert t > 0 and cal["fitted_on"] == "val" and m["tta"] == {"views": "flip", "n_views": 2}
    assert cal["val"]["nll_after"] <= cal["val"]["nll_before"] + 1e-9  # fitted on val
    assert {"ece_before", "ece_after"} <= set(cal["test"]) and m["test"]["ece"] is not None
    assert load_checkpoint(out / "best.pt")["temperature"] == pytest.approx(t)
    model = res.load()
    assert model.temperature == pytest.approx(t) and model.tta == "flip"
    splits = cnnlab.data(str(data), image_size=12)
    again = model.evaluate(splits.test)
    assert again["loss"] == pytest.approx(m["test"]["loss"], rel=1e-4)
    assert again["loss"] == pytest.approx(cal["test"]["nll_after"], rel=1e-4)
    assert again["ece"] == pytest.approx(cal["test"]["ece_after"], abs=1e-6)
    mean = torch.softmax(model.view_logits(splits.test.images), 2).mean(0)
    raw = torch.softmax(mean.log() / t, 1)  # the averaged prediction, tempered
    assert np.allclose(model.predict_proba(splits.test.images), raw.numpy(), atol=1e-6)
    tempered = model.predict(splits.test.images)
    model.temperature = 1.0
    assert (model.predict(splits.test.images) == tempered).all()  # T never changes a prediction


def test_without_a_validation_split_calibration_is_skipped(tmp_path: Path) -> None:
    import cnnlab

    data = write_image_folder(tmp_path / "imgs", n_per_class=6, size=12)
    res = cnnlab.train(str(data), model="cnn", epochs=1, image_size=12, val_split=0.0,
                       out=str(tmp_path / "run"), calibrate=True, verbose=False, report=False,
                       extra={"plots": False})
    assert "no labeled validation split" in res.metrics["calibration"]["skipped"]
    assert res.load().temperature == 1.0


@pytest.mark.slow
def test_report_diagram_and_cli_tta(tmp_path: Path) -> None:
    import cnnlab

    data = write_image_folder(tmp_path / "imgs", n_per_class=12, size=12)
    out = tmp_path / "run"
    cnnlab.train(str(data), model="cnn", epochs=2, image_size=12, out=str(out), calibrate=True,
                 tta="flip", verbose=False)
    html = (out / "report.html").read_text()
    assert "Calibration" in html and "ECE before" in html and "Reliability" not in html[:200]
    assert (out / "plots" / "reliability.png").is_file()
    model = Predictor.load(out / "best.pt")
    splits = cnnlab.data(str(data), image_size=12)
    # evaluate --tta none overrides the run's flip: the loss of the plain tempered softmax
    r = run_cli("evaluate", "--weights", str(out), "--tta", "none", "--json")
    assert r.returncode == 0, r.stderr
    plain = json.loads(r.stdout)["test"]
    z = model.view_logits(splits.test.images, "none")[0] / model.temperature
    assert plain["loss"] == pytest.approx(float(F.cross_entropy(z, splits.test.labels)), rel=1e-4)
    bad = run_cli("predict", "--weights", str(out), "--tta", "twist", "-o", str(tmp_path / "p"))
    assert bad.returncode == 2 and "unknown view 'twist'" in bad.stderr


def test_estimator_predict_proba_averages_the_views() -> None:
    from cnnlab.estimator import ImageClassifier

    g = np.random.default_rng(0)
    X = g.integers(0, 256, (60, 10, 10), dtype=np.uint8)
    y = (X[:, :, :5].mean((1, 2)) > X[:, :, 5:].mean((1, 2))).astype(int)
    clf = ImageClassifier(model="cnn", epochs=2).fit(X, y)
    plain = clf.predict_proba(X)
    mirrored = clf.predict_proba(X[:, :, ::-1].copy())
    clf.set_params(tta="flip")  # after fit: predict_proba follows the current parameter
    both = clf.predict_proba(X)
    assert np.allclose(both, (plain + mirrored) / 2, atol=1e-9)
    assert not np.allclose(both, plain, atol=1e-4)
    assert both.dtype == np.float64 and np.allclose(both.sum(1), 1)


@pytest.mark.slow
def test_onnx_export_keeps_temperature_and_views(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import cnnlab
    from cnnlab.export import export_model

    out = tmp_path / "run"
    cnnlab.train(epochs=1, out=str(out), model_args={"width": 4}, calibrate=True, tta="shift",
                 report=False, verbose=False, extra={"plots": False})
    ckpt = cnnlab.load(out / "best.pt")
    assert ckpt.temperature != 1.0
    export_model(out / "best.pt", "onnx", tmp_path / "m.onnx")
    onnx_model = cnnlab.load(tmp_path / "m.onnx")
    assert onnx_model.temperature == ckpt.temperature and onnx_model.tta == "shift"
    images = cnnlab.data(None).test.images[:40]
    assert np.abs(onnx_model.predict_proba(images) - ckpt.predict_proba(images)).max() < 1e-5
