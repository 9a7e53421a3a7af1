"""The engine that computes a frozen backbone's features: ONNX Runtime where installed on CPU.

Measured interleaved on the project's 2-core CPU (bench/feature_engines.py, EfficientNet-Lite0
at 224 px, docs/performance.md): ONNX Runtime in float32 (it folds BatchNorm and fuses each
convolution with its ReLU6 in blocked layouts) was the fastest engine, ahead of torch bf16 with
channels_last and BatchNorm folded, and its features are the float32 ones (cosine 1.0000, the
same ImageNet top-1 on every image; bf16 changed 1.6% of them). Without onnxruntime, or on a
GPU, the pass runs in torch (bf16 where the run trains in it, BatchNorm folded).

The engine's input is the model's own input (float 0..1 images; the Classifier normalizes
inside), its output the head's input: the model with its head replaced by nn.Identity.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.data.batches import batch_slices, to_float

ORT_MIN_IMAGES = 64  # fewer images than this: exporting costs more than it saves
ORT_BATCH = 64


def ort_available() -> bool:
    """True when onnxruntime (and onnx, for the export) import."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("CNNLAB_FEATURE_ENGINE", "auto") != "torch"


def use_ort(device: torch.device, n_images: int) -> bool:
    """ONNX Runtime computes the features: on CPU, installed, enough images to pay the export."""
    return device.type == "cpu" and n_images >= ORT_MIN_IMAGES and ort_available()


def headless(model: nn.Module, head: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` whose `head` is nn.Identity: it returns the head's input."""
    name = next(n for n, m in model.named_modules() if m is head)
    work = copy.deepcopy(model).eval()
    parent_name, _, attr = name.rpartition(".")
    parent = work.get_submodule(parent_name) if parent_name else work
    setattr(parent, attr, nn.Identity())
    return work


class OrtFeatures:
    """`module` (float 0..1 images -> features) exported to ONNX and run by onnxruntime."""

    name = "onnxruntime"
    precision = "32"

    def __init__(self, module: nn.Module, sample: torch.Tensor) -> None:
        import onnxruntime as ort

        module = copy.deepcopy(module).float().eval().to(memory_format=torch.contiguous_format)
        with tempfile.TemporaryDirectory(prefix="cnnlab-features-") as tmp:
            path = Path(tmp) / "backbone.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter
                torch.onnx.export(module, (sample[:1].float().contiguous(),), str(path),
                                  input_names=["x"], output_names=["f"],
                                  dynamic_axes={"x": {0: "n"}, "f": {0: "n"}}, opset_version=17,
                                  dynamo=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = torch.get_num_threads()
            so.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(path), so,
                                                providers=["CPUExecutionProvider"])

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The module's float32 output for float input x (the module's own input)."""
        x = np.ascontiguousarray(x.detach().float().cpu().contiguous().numpy())
        f = self.session.run(None, {"x": x})[0]
        return torch.from_numpy(f.reshape(f.shape[0], -1))

    def __call__(self, images: torch.Tensor, batch_size: int = ORT_BATCH) -> torch.Tensor:
        """float32 features [N, D] of uint8 [N,C,H,W] images."""
        out = [self.run(to_float(images[sl])) for sl in batch_slices(images.shape[0],
                                                                      batch_size)]
        return torch.cat(out) if out else torch.zeros(0, 0)


class OrtModule(nn.Module):
    """A stand-in for an eval-mode module (float input -> logits) that runs in onnxruntime:
    for the report's many forward passes (robustness probes), where no gradient is needed."""

    def __init__(self, module: nn.Module, sample: torch.Tensor) -> None:
        super().__init__()
        self._ort = OrtFeatures(module, sample)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of x, float32 on the CPU."""
        return self._ort.run(x)
