"""The engine that computes a frozen backbone's features on the CPU: OpenVINO, else ONNX Runtime.

Measured interleaved on the project's 2-core CPU (bench/feature_engines.py, EfficientNet-Lite0
at 224 px, 256 photos, docs/performance.md): OpenVINO in float32 ran at 142 img/s, ONNX Runtime
in float32 at 51, torch bf16 with channels_last and BatchNorm folded at 36 and torch float32 at
9. Both exported engines give the float32 features (cosine 1.0000, the same ImageNet top-1 on
every image; bf16 changed 3% of them), so the fastest one installed is used. Without either,
or on a GPU, the pass runs in torch (bf16 where the run trains in it, BatchNorm folded).
`CNNLAB_FEATURE_ENGINE` (auto|openvino|onnxruntime|torch) forces one.

The engine's input is the model's own input (float 0..1 images; the Classifier normalizes
inside), its output the head's input: the model with its head replaced by nn.Identity.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cnnlab.data.batches import batch_slices, to_float

MIN_IMAGES = 64  # fewer images than this: exporting costs more than it saves
# Images per inference: OpenVINO ran 8-image batches at 1.1-1.3x its rate at 32 on 2 cores
# (a smaller working set per layer); onnxruntime was fastest at 32 (bench/feature_engines.py).
BATCH = {"openvino": 8, "onnxruntime": 32}
ENGINES = ("openvino", "onnxruntime")  # fastest first (bench/feature_engines.py)
PRECISION_TAG = {"openvino": "ov-32", "onnxruntime": "ort-32"}  # feature store names
LABEL = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def _installed(engine: str) -> bool:
    """True when `engine` and onnx (for the export) are installed (found, not imported: onnx
    alone takes a second to import; a broken install falls back to torch where it is used)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", engine))


def exported_engine() -> str | None:
    """The fastest installed engine for exported networks, or None (torch computes)."""
    wanted = os.environ.get("CNNLAB_FEATURE_ENGINE", "auto").strip().lower()
    for engine in ENGINES:
        if wanted in ("auto", engine) and _installed(engine):
            return engine
    return None


def engine_for(device: torch.device, n_images: int) -> str:
    """The engine of a feature pass over `n_images` on `device`: an exported one on the CPU
    when installed and the images pay for the export, else 'torch'."""
    if device.type != "cpu" or n_images < MIN_IMAGES:
        return "torch"
    return exported_engine() or "torch"


def headless(model: nn.Module, head: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` whose `head` is nn.Identity: it returns the head's input."""
    name = next(n for n, m in model.named_modules() if m is head)
    work = copy.deepcopy(model).eval()
    parent_name, _, attr = name.rpartition(".")
    parent = work.get_submodule(parent_name) if parent_name else work
    setattr(parent, attr, nn.Identity())
    return work


class ExportedFeatures:
    """`module` (float 0..1 images -> features) exported to ONNX and run in float32 by
    OpenVINO or onnxruntime (`engine`; default: the fastest installed)."""

    def __init__(self, module: nn.Module, sample: torch.Tensor, engine: str | None = None
                 ) -> None:
        self.name = engine or exported_engine() or "onnxruntime"
        module = copy.deepcopy(module).float().eval().to(memory_format=torch.contiguous_format)
        with tempfile.TemporaryDirectory(prefix="cnnlab-features-") as tmp:
            path = Path(tmp) / "backbone.onnx"
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer and exporter deprecation chatter
                torch.onnx.export(module, (sample[:1].float().contiguous(),), str(path),
                                  input_names=["x"], output_names=["f"],
                                  dynamic_axes={"x": {0: "n"}, "f": {0: "n"}}, opset_version=17,
                                  dynamo=False)
            self._infer = _openvino(path) if self.name == "openvino" else _onnxruntime(path)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The module's float32 output for float input x (the module's own input)."""
        x = np.ascontiguousarray(x.detach().float().cpu().contiguous().numpy())
        if x.shape[0] == 0:
            return torch.zeros(0, 0)
        step = BATCH[self.name]
        f = np.concatenate([self._infer(x[s:s + step]) for s in range(0, x.shape[0], step)])
        return torch.from_numpy(f.reshape(f.shape[0], -1))

    def __call__(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """float32 features [N, D] of uint8 [N,C,H,W] images."""
        out = [self.run(to_float(images[sl])) for sl in batch_slices(images.shape[0],
                                                                      batch_size)]
        return torch.cat(out) if out else torch.zeros(0, 0)


def _onnxruntime(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """An onnxruntime session of the file at `path`, as a function of its one input."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x})[0]


def _openvino(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The file at `path` compiled by OpenVINO for the CPU in float32, as a function of its
    one input (the file may be deleted once this returns: the model is read into memory)."""
    import openvino as ov

    core = ov.Core()
    # float32 explicitly: on CPUs with AMX OpenVINO would otherwise infer in bf16.
    # One stream on all threads: two streams of one thread (THROUGHPUT, async) measured the same.
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    request = compiled.create_infer_request()
    return lambda x: np.array(request.infer({"x": x})[0])


class ExportedModule(nn.Module):
    """A stand-in for an eval-mode module (float input -> logits) that runs exported (OpenVINO
    or onnxruntime): for the report's many forward passes, where no gradient is needed."""

    def __init__(self, module: nn.Module, sample: torch.Tensor, engine: str | None = None
                 ) -> None:
        super().__init__()
        self._exported = ExportedFeatures(module, sample, engine)
        self.engine = self._exported.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of x, float32 on the CPU."""
        return self._exported.run(x)


class HeadOnFeatures(nn.Module):
    """A model run as an exported backbone (already built, e.g. by the feature pass) followed
    by its torch `head`: the report's forward passes reuse the feature pass's engine instead of
    exporting the whole model again (about 2.5 s for EfficientNet-Lite0 here)."""

    def __init__(self, features: ExportedFeatures, head: nn.Module) -> None:
        super().__init__()
        self._features = features
        self.head = head
        self.engine = features.name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of x (the model's own float input), float32 on the CPU."""
        f = self._features.run(x)
        p = next(self.head.parameters(), None)
        return self.head(f.to(p.dtype) if p is not None else f).float()
