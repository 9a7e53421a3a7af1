"""Backbone features on disk (issue 23, items 2 and 4): a frozen-backbone `train` stores its
features; the next train and `doctor --features backbone` on the same files reuse them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnlab
from cnnlab.data import feature_store
from cnnlab.doctor import features as doctor_features
from cnnlab.doctor import run_doctor
from cnnlab.models.efficientnet import lite0_weights_path
from cnnlab.run import RunResult, load_options, saved_settings
from cnnlab.settings import TrainConfig

try:
    HAVE_WEIGHTS = lite0_weights_path().is_file()
except Exception:  # noqa: BLE001 - the package is optional
    HAVE_WEIGHTS = False
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="EfficientNet-Lite0 weights missing")


def rgb_folder(root: Path, n: int = 12, side: int = 80) -> Path:
    """root/{train,val}/{red,blue}/*.jpg: coloured noise, the class in the dominant colour."""
    rng = np.random.default_rng(0)
    for part, k in (("train", n), ("val", n // 2)):
        for c, cls in enumerate(("red", "blue")):
            (root / part / cls).mkdir(parents=True, exist_ok=True)
            for i in range(k):
                a = rng.integers(0, 120, (side, side, 3), dtype=np.uint8)
                a[..., 0 if c == 0 else 2] += 120
                Image.fromarray(a).save(root / part / cls / f"{i}.jpg", quality=90)
    return root


def _train(data: Path, out: Path) -> RunResult:
    return cnnlab.train(data=data, model="efficientnet-lite0", pretrained=True, freeze="all",
                        epochs=1, image_size=64, out=str(out), verbose=False, device="cpu",
                        report=False)


@needs_weights
def test_train_stores_features_and_the_next_run_and_doctor_reuse_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    data = rgb_folder(tmp_path / "data")
    first = _train(data, tmp_path / "r1")
    assert first.resolved["feature_store_reused"] == 0
    assert first.resolved["feature_precision"] in ("bf16", "32")
    stored = sorted((tmp_path / "cache" / "features").glob("*.npy"))
    assert len(stored) == 2  # one per split

    second = _train(data, tmp_path / "r2")
    assert second.resolved["feature_store_reused"] == 36
    assert second.metrics["val"]["accuracy"] == first.metrics["val"]["accuracy"]
    assert second.metrics["val"]["loss"] == pytest.approx(first.metrics["val"]["loss"])

    def no_backbone(*a: object, **k: object) -> np.ndarray:
        raise AssertionError("the doctor ran the backbone instead of reusing train's features")

    monkeypatch.setattr(doctor_features, "backbone_features", no_backbone)
    opts = load_options(saved_settings(first.run_dir))
    report = run_doctor(data, opts, out=tmp_path / "doc", feature_kind="backbone",
                        skip=("labels",), verbose=True)
    assert report["settings"]["features"] == "backbone"
    assert "reusing the stored backbone features of 36 images" in capsys.readouterr().err


@needs_weights
def test_doctor_right_after_train_reads_neither_files_nor_backbone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Train decodes the photos at the backbone's 224 px; the doctor maps that decode instead
    of decoding the files again at its own 64 px, and reuses the stored features."""
    from cnnlab.data.load import LoadOptions
    from cnnlab.data.sources import decoded

    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    data = rgb_folder(tmp_path / "data", n=6, side=128)
    cnnlab.train(data=data, model="efficientnet-lite0", pretrained=True, freeze="all",
                 epochs=1, out=str(tmp_path / "r"), verbose=False, device="cpu", report=False)

    def no_decode(*a: object, **k: object) -> None:
        raise AssertionError("the doctor decoded the files again")

    def no_backbone(*a: object, **k: object) -> np.ndarray:
        raise AssertionError("the doctor ran the backbone instead of reusing train's features")

    monkeypatch.setattr(decoded, "decode_many", no_decode)
    monkeypatch.setattr(doctor_features, "backbone_features", no_backbone)
    capsys.readouterr()
    report = run_doctor(data, LoadOptions(), out=tmp_path / "doc", feature_kind="backbone",
                        skip=("labels",), verbose=True)
    err = capsys.readouterr().err
    assert "reusing the 224-px images an earlier `cnnlab train` decoded" in err
    assert "reusing the stored backbone features of 18 images" in err
    assert report["data"]["shape"] == "3 x 224 x 224"
    assert report["settings"]["backbone_side"] == 224

    # Pixel features never need the backbone's side: the doctor decodes at its own 64 px.
    monkeypatch.undo()
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    report = run_doctor(data, LoadOptions(), out=tmp_path / "doc2", feature_kind="pixels",
                        skip=("labels",), verbose=False)
    assert report["data"]["shape"] == "3 x 64 x 64"


def test_a_cache_only_read_of_arrays_is_a_miss_not_a_resize(tmp_path: Path) -> None:
    """Arrays are never decoded, so never in the decode cache: the doctor's probe for train's
    decode must not read them (and enlarge them to 224 px) instead."""
    from cnnlab.data.cache import CacheMiss
    from cnnlab.data.load import LoadOptions, load_data

    np.save(tmp_path / "train_images.npy", np.zeros((20, 28, 28), np.uint8))
    np.save(tmp_path / "train_labels.npy", np.arange(20) % 2)
    with pytest.raises(CacheMiss):
        load_data(tmp_path, LoadOptions(image_size=224, cache_only=True))
    assert load_data(tmp_path, LoadOptions()).train.images.shape[-1] == 28


@needs_weights
def test_doctor_stores_features_that_train_reuses(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    data = rgb_folder(tmp_path / "data", n=6)
    opts = load_options(TrainConfig(data=str(data), image_size=64,
                                               model="efficientnet-lite0"))
    run_doctor(data, opts, out=tmp_path / "doc", feature_kind="backbone", skip=("labels",),
               verbose=False)
    res = _train(data, tmp_path / "r")
    assert res.resolved["feature_store_reused"] == 18


def test_a_changed_file_is_a_miss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "a.jpg"
    f.write_bytes(b"x")
    key = feature_store.feature_key([f], "d", 64, "crop", None, [0.5], [0.2], "bf16")
    feature_store.save_features(key, torch.ones(1, 4))
    assert feature_store.load_features(key, 1).tolist() == [[1.0] * 4]
    assert feature_store.load_features(key, 2) is None  # another count: not these features
    f.write_bytes(b"xy")
    assert feature_store.feature_key([f], "d", 64, "crop", None, [0.5], [0.2], "bf16") != key
    assert feature_store.feature_key([f], "d", 64, "crop", None, [0.5], [0.2], "32") != \
        feature_store.feature_key([f], "d", 64, "crop", None, [0.5], [0.2], "bf16")


@pytest.mark.parametrize("engine", ["openvino", "onnxruntime"])
def test_exported_engine_features_equal_the_float32_torch_features(engine: str) -> None:
    pytest.importorskip(engine)
    pytest.importorskip("onnx")
    from cnnlab.data.imageset import DataSplits, ImageSet
    from cnnlab.models import Classifier, build_model
    from cnnlab.train.features import FeatureCache

    torch.manual_seed(0)
    net = build_model("cnn", 2, 3, 24, width=8)
    model = Classifier(net, [0.5] * 3, [0.25] * 3).eval()
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    g = torch.Generator().manual_seed(1)
    imgs = torch.randint(0, 256, (80, 3, 24, 24), dtype=torch.uint8, generator=g)
    split = ImageSet(imgs, torch.arange(80) % 2, ["a", "b"], [str(i) for i in range(80)])
    splits = DataSplits(split, None, None, "random")
    cpu = torch.device("cpu")
    ort = FeatureCache(model, splits, cpu, engine=engine)
    ref = FeatureCache(model, splits, cpu, fold=False)
    folded = FeatureCache(model, splits, cpu)
    assert ort.engine == engine and ref.engine == "torch" and folded.folded > 0
    assert torch.allclose(ort.get("train"), ref.get("train"), atol=1e-5, rtol=1e-4)
    assert torch.allclose(folded.get("train"), ref.get("train"), atol=1e-5, rtol=1e-4)
    assert ort.reused == 0


def test_a_model_onnx_cannot_export_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.data.imageset import DataSplits, ImageSet
    from cnnlab.models import Classifier, build_model, feature_engine
    from cnnlab.train.features import FeatureCache

    def refuse(*a: object, **k: object) -> None:
        raise RuntimeError("cannot export")

    monkeypatch.setattr(feature_engine.ExportedFeatures, "__init__", refuse)
    model = Classifier(build_model("cnn", 2, 3, 16, width=4), [0.5] * 3, [0.25] * 3)
    imgs = torch.randint(0, 256, (70, 3, 16, 16), dtype=torch.uint8)
    splits = DataSplits(ImageSet(imgs, torch.arange(70) % 2, ["a", "b"],
                                 [str(i) for i in range(70)]), None, None, "random")
    cache = FeatureCache(model, splits, torch.device("cpu"), engine="onnxruntime",
                         keys={"train": "k"})
    assert cache.engine == "torch" and cache.get("train").shape[0] == 70


def test_the_feature_engine_plus_the_head_gives_the_models_logits() -> None:
    # The report reuses the feature pass's exported backbone with the best head
    # (run.py exported_model): its logits must be the model's own.
    from cnnlab.models import Classifier, build_model
    from cnnlab.models.feature_engine import (
        ExportedFeatures,
        HeadOnFeatures,
        exported_engine,
        headless,
    )
    from cnnlab.train.transfer import head_of

    if exported_engine() is None:
        pytest.skip("neither openvino nor onnxruntime is installed")
    torch.manual_seed(0)
    model = Classifier(build_model("cnn", 3, 3, 24, width=8), [0.5] * 3, [0.25] * 3).eval()
    x = torch.rand(70, 3, 24, 24)
    head = head_of(model.net)
    both = HeadOnFeatures(ExportedFeatures(headless(model, head), x[:1]), head)
    with torch.inference_mode():
        want = model(x)
        got = both(x)
    assert got.shape == want.shape == (70, 3) and both.engine == exported_engine()
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


@needs_weights
@pytest.mark.slow  # a frozen-backbone run with its report: ~15 s
def test_the_report_runs_on_the_feature_pass_engine_without_exporting_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.models import feature_engine

    engine = feature_engine.exported_engine()
    if engine is None:
        pytest.skip("neither openvino nor onnxruntime is installed")

    def no_second_export(*a: object, **k: object) -> None:
        raise AssertionError("the report exported the model again")

    # A second export would fail here and the report would fall back to torch (no engine
    # named on the page): the robustness line names the engine only if the run's was reused.
    monkeypatch.setattr(feature_engine.ExportedModule, "__init__", no_second_export)
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    data = rgb_folder(tmp_path / "data", n=40, side=64)
    res = cnnlab.train(data=data, model="efficientnet-lite0", pretrained=True, freeze="all",
                       epochs=1, image_size=64, out=str(tmp_path / "r"), verbose=False,
                       device="cpu")
    assert res.resolved["feature_engine"] == engine
    page = (res.run_dir / "report.html").read_text()
    assert f"forward passes, float32, {feature_engine.LABEL[engine]})" in page
