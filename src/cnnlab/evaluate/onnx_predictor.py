"""Predict with an exported .onnx file (onnxruntime), through the same Predictor interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.batches import batch_slices, to_float
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.predictor import Predictor
from cnnlab.models.tta import parse_tta

META_PREFIX = "cnnlab."
# cnnlab is installed from a clone, not from PyPI: `cnnlab[export]` would resolve nothing.
INSTALL_HINT = "pip install onnx onnxruntime (or pip install -e '.[export]' in the cnnlab clone)"


class OnnxPredictor(Predictor):
    """A Predictor scored by onnxruntime; classes and sizes come from the file's metadata."""

    def __init__(self, session: object, arch: dict, classes: list[str], config: dict,
                 path: Path) -> None:
        self.session, self.module, self.device = session, None, torch.device("cpu")
        self.precision, self.engine = "32", ""  # as Predictor has them (report/engines.py)
        self.arch, self.classes, self.config, self.path = arch, classes, config, path
        self.input_name = session.get_inputs()[0].name  # type: ignore[attr-defined]
        self.tta = parse_tta(config.get("tta"))
        meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
        self.temperature = float(meta.get(f"{META_PREFIX}temperature", 1.0))

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", precision: str = "32") -> OnnxPredictor:
        """Open an ONNX file written by `cnnlab export` (CUDA provider when asked and present)."""
        path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise CnnlabError(f"{path}: predicting with ONNX needs onnxruntime: "
                              f"{INSTALL_HINT}") from None
        if not path.is_file():
            raise CnnlabError(f"{path}: ONNX file not found")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            sess = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CnnlabError(f"{path}: not a loadable ONNX model ({first[:200]})") from None
        meta = sess.get_modelmeta().custom_metadata_map
        if f"{META_PREFIX}classes" not in meta:
            raise CnnlabError(f"{path}: no cnnlab metadata (classes, image size); export it with "
                              "`cnnlab export`")
        return cls(sess, json.loads(meta[f"{META_PREFIX}arch"]),
                   json.loads(meta[f"{META_PREFIX}classes"]),
                   json.loads(meta.get(f"{META_PREFIX}config", "{}")), path)

    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Raw scores for uint8 NCHW images, computed by onnxruntime."""
        images = self._sized(images)
        out = []
        for sl in batch_slices(images.shape[0], batch_size):
            x = to_float(images[sl]).numpy().astype(np.float32, copy=False)
            out.append(torch.from_numpy(self.session.run(None, {self.input_name: x})[0]))
        if not out:
            return torch.zeros(0, len(self.classes))
        return torch.cat(out).float()
