"""The pixel scale of float arrays never depends on the batch's own values."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import digits_arrays

from cnnlab.data.load import LoadOptions, read_source
from cnnlab.data.value_range import default_range, infer_range, parse_range
from cnnlab.errors import DataError
from cnnlab.evaluate.predictor import Predictor
from cnnlab.models.record import rebuild


def _predictor(config: dict | None = None) -> Predictor:
    torch.manual_seed(0)
    arch = {"name": "cnn", "args": {}, "num_classes": 10, "in_channels": 1, "image_size": 8}
    return Predictor(rebuild(arch), arch, [str(i) for i in range(10)], config or {})


def _floats(n: int = 10) -> np.ndarray:
    x, _ = digits_arrays(n)
    return x.astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Predictor:
    """cnn trained 3 epochs on the built-in digits (about 2 s)."""
    import cnnlab

    out = tmp_path_factory.mktemp("vr") / "run"
    return cnnlab.train(None, model="cnn", epochs=3, out=str(out), verbose=False, report=False,
                        extra={"plots": False}).load()


@pytest.mark.slow
def test_gaussian_noise_predicts_as_its_clipped_copy(trained: Predictor):
    x8, y = digits_arrays(200)
    x = x8.astype(np.float32) / 255.0
    noisy = x + np.random.default_rng(0).normal(0, 0.1, x.shape).astype(np.float32)
    assert noisy.min() < 0 and noisy.max() > 1  # the CS 475 1.8 noise leaves 0..1
    with pytest.warns(UserWarning, match=r"\d+ of 12800 pixel values outside the value range "
                                         r"0\.\.1 were clipped"):
        p_noisy = trained.predict_proba(noisy)
    p_clipped = trained.predict_proba(np.clip(noisy, 0, 1))
    np.testing.assert_allclose(p_noisy, p_clipped, atol=1e-6)
    assert (p_noisy.argmax(1) == y).mean() >= 0.8  # not read as 0..255 (nearly black)
    p_as_255 = trained.predict_proba(noisy.clip(0, None), value_range=(0, 255))
    assert (p_as_255.argmax(1) == y).mean() < 0.5


def test_one_pixel_above_one_changes_nothing_and_warns_each_time(trained: Predictor):
    x8, y = digits_arrays(10)
    x = x8.astype(np.float32) / 255.0
    before = trained.predict_proba(x)
    bumped, at_one = x.copy(), x.copy()
    bumped[0, 0, 0], at_one[0, 0, 0] = 1.0001, 1.0
    model = Predictor(trained.module, trained.arch, trained.classes, trained.config)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        after = model.predict_proba(bumped)
        model.predict_proba(bumped)  # a second call: a second warning (never silent)
    np.testing.assert_allclose(after, model.predict_proba(at_one), atol=1e-6)
    np.testing.assert_allclose(after[1:], before[1:], atol=1e-6)  # the others are untouched
    assert (after.argmax(1) == before.argmax(1)).all()
    assert len(seen) == 2 and all("1 of 640 pixel values" in str(w.message) for w in seen)


def test_explicit_value_range_matches_uint8_input():
    model = _predictor()
    x8, _ = digits_arrays(10)
    ref = model.predict_proba(x8)
    np.testing.assert_allclose(model.predict_proba(x8.astype(np.float64), value_range=(0, 255)),
                               ref, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(x8 / 127.5 - 1, value_range="-1,1"), ref,
                               atol=1e-6)
    # the range recorded with the checkpoint (training data read as 0..255 floats)
    recorded = _predictor({"value_range": [0.0, 255.0]})
    np.testing.assert_allclose(recorded.predict_proba(x8.astype(np.float32)), ref, atol=1e-6)


def test_api_load_takes_value_range(tmp_path: Path):
    import cnnlab
    from cnnlab.checkpoint import save_checkpoint

    model = _predictor()
    save_checkpoint(tmp_path / "m.pt", {"model_state": model.module.state_dict(),
                                        "arch": model.arch, "classes": model.classes,
                                        "config": {}})
    x8, _ = digits_arrays(10)
    loaded = cnnlab.load(tmp_path / "m.pt", value_range=(0, 255))
    np.testing.assert_allclose(loaded.predict_proba(x8.astype(np.float32)),
                               model.predict_proba(x8), atol=1e-6)


def test_ranges():
    assert default_range(np.dtype(np.float32)) == (0.0, 1.0)
    assert default_range(np.dtype(np.int64)) == (0.0, 255.0)
    assert infer_range(np.array([0.0, 0.5])) == (0.0, 1.0)
    assert infer_range(np.array([0.0, 200.0])) == (0.0, 255.0)
    assert infer_range(np.array([-2.0, 3.0])) == (-2.0, 3.0)
    assert parse_range("0..255") == (0.0, 255.0)
    with pytest.raises(DataError):
        parse_range((1, 1))


def test_float_npy_records_its_range(tmp_path: Path):
    x, y = digits_arrays(50)
    np.save(tmp_path / "d_images.npy", x.astype(np.float32) / 255.0)
    np.save(tmp_path / "d_labels.npy", y)
    data = read_source(tmp_path, LoadOptions())
    assert data.meta["value_range"] == [0.0, 1.0]
    assert torch.equal(data.images[:, 0], torch.from_numpy(x))
    fixed = read_source(tmp_path, LoadOptions(value_range=(0.0, 2.0), use_cache=False))
    assert int(fixed.images.max()) <= 128
