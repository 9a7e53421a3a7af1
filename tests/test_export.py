"""Export to ONNX / TorchScript: parity with PyTorch, metadata, predict from the .onnx file."""

from __future__ import annotations

import csv
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

import cnnlab
from cnnlab.checkpoint import load_checkpoint
from cnnlab.data import load_data
from cnnlab.errors import CnnlabError
from cnnlab.export import export_model, read_torchscript_meta

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of a tiny Conv-BN CNN trained one epoch on digits (BN, pooling, dropout)."""
    out = tmp_path_factory.mktemp("export") / "run"
    cnnlab.train(epochs=1, out=str(out), model_args={"width": 4}, report=False, verbose=False)
    return out / "best.pt"


def _csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_onnx_export_cli_parity_metadata_and_predict(trained: Path, tmp_path: Path):
    onnx_file = tmp_path / "model.onnx"
    res = run_cli("export", "--weights", str(trained), "--format", "onnx", "--out", str(onnx_file))
    assert res.returncode == 0, res.stderr
    m = re.search(r"max abs difference vs PyTorch on \d+ sample inputs: (\S+)", res.stderr)
    assert m and float(m.group(1)) < 1e-4, res.stderr

    # Our own check, independent of the command's: another batch size (dynamic batch axis),
    # uint8-derived inputs in [0, 1] and the PyTorch model rebuilt from the checkpoint.
    torch_model = cnnlab.load(trained)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    sess = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"image": x.numpy()})[0]
    with torch.inference_mode():
        ref = torch_model.module(x).numpy()
    assert got.shape == (5, 10)
    assert np.abs(got - ref).max() < 1e-4
    # normalization is inside the graph: raw [0, 1] input gives the Predictor's answer
    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert meta["cnnlab.classes"] == '["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]'
    assert meta["cnnlab.image_size"] == "8" and meta["cnnlab.channels"] == "1"

    # predict from the .onnx file equals predict from the checkpoint
    test = load_data(None).test
    from_onnx = cnnlab.load(onnx_file)
    assert from_onnx.classes == torch_model.classes
    p_onnx = from_onnx.predict_proba(test.images)
    p_ckpt = torch_model.predict_proba(test.images)
    assert np.abs(p_onnx - p_ckpt).max() < 1e-5
    assert (p_onnx.argmax(1) == p_ckpt.argmax(1)).all()
    csv_onnx = tmp_path / "onnx.csv"
    res = run_cli("predict", "--weights", str(onnx_file), "--output", str(csv_onnx))
    assert res.returncode == 0, res.stderr
    rows = _csv(csv_onnx)
    assert len(rows) == len(test)
    assert [int(r["label"]) for r in rows] == p_ckpt.argmax(1).tolist()
    # where a checkpoint is needed (--init-from, export), the .onnx file is named as an export
    with pytest.raises(CnnlabError, match=r"model.onnx: an ONNX export; give the checkpoint it "
                       r"was exported from \(best.pt or its run folder\)$"):
        load_checkpoint(onnx_file)
    # Grad-CAM looks into the network's layers: an ONNX file has none, one line says so
    # (it used to end in "unexpected AttributeError")
    res = run_cli("explain", "gradcam", "--weights", str(onnx_file), "--out",
                  str(tmp_path / "cam.png"))
    assert res.returncode != 0 and not (tmp_path / "cam.png").exists()
    assert res.stderr.strip().splitlines() == [
        f"error: {onnx_file}: Grad-CAM needs the PyTorch checkpoint (the run folder or its "
        "best.pt); an exported ONNX model has no layers to look into"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit.load's own notice
def test_torchscript_export_loads_and_matches(trained: Path, tmp_path: Path):
    res = export_model(trained, "torchscript", tmp_path / "model.ts.pt")
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-5
    loaded = torch.jit.load(str(res.path))
    x = torch.rand(3, 1, 8, 8)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), cnnlab.load(trained).module(x), atol=1e-5)
    meta = read_torchscript_meta(res.path)
    assert meta["cnnlab.image_size"] == "8"
    # cnnlab never runs the code a TorchScript file holds; it says what the file is, in its
    # one line (torch.load's own warning about TorchScript archives is never reached)
    with warnings.catch_warnings(), pytest.raises(
            CnnlabError, match=r"a TorchScript export, which holds code cnnlab never runs; "
            r"give the checkpoint it was exported from \(best.pt or its run folder\)"):
        warnings.simplefilter("error", UserWarning)
        cnnlab.load(res.path)


def test_export_errors_are_one_line(trained: Path, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(CnnlabError, match="choose onnx or torchscript"):
        export_model(trained, "tflite", tmp_path / "x")
    with pytest.raises(CnnlabError, match="checkpoint not found"):
        export_model(tmp_path / "missing.pt", "torchscript", tmp_path / "x")
    # Without the optional packages the message says how to get them, and nothing is written.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    # (A command that works from a clone: cnnlab is not on PyPI, so cnnlab[export] would not.)
    with pytest.raises(CnnlabError, match=r"pip install onnx onnxruntime \(or pip install -e "
                                          r"'\.\[export\]' in the cnnlab clone\)"):
        export_model(trained, "onnx", tmp_path / "y.onnx")
    assert not (tmp_path / "y.onnx").exists()
