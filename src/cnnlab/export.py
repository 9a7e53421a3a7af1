"""Export a trained checkpoint to ONNX, TorchScript or a bare state_dict, checked against PyTorch.

The exported graph is the whole Classifier: it takes float images in [0, 1], NCHW, any batch
size, and normalizes them itself, so a consumer needs nothing but the file. Class names, the
architecture record and the decode settings travel inside the file (ONNX metadata_props, a
TorchScript extra file), which is what lets `cnnlab predict --weights model.onnx` work.

`state_dict` is what the course seeds load with `model.load_state_dict(torch.load(PATH))`: the
bare network's weights (keys as the seed's attribute names, no `net.` prefix), loadable
strictly into a module built by the seed's class. Normalization is not part of that network:
the mean/std (0..1 scale), class names and input size go to a JSON file beside it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.evaluate.onnx_predictor import INSTALL_HINT, META_PREFIX
from cnnlab.evaluate.predictor import Predictor
from cnnlab.io import atomic_path

FORMATS = ("onnx", "torchscript", "state_dict")
TORCHSCRIPT_META = "cnnlab.json"


@dataclass
class ExportResult:
    """What an export wrote and how closely it reproduces the PyTorch model."""

    path: Path
    format: str
    max_abs_diff: float | None
    samples: int


def require_onnx() -> None:
    """Fail with one line when the optional ONNX packages are missing."""
    missing = []
    for mod in ("onnx", "onnxruntime"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise CnnlabError(f"ONNX export needs {' and '.join(missing)}: {INSTALL_HINT}")


def metadata(model: Predictor) -> dict[str, str]:
    """String key/values stored with an exported model (classes, arch, decode settings)."""
    cfg = {k: v for k, v in (model.config or {}).items() if isinstance(v, (str, int, float, bool,
                                                                             type(None)))}
    return {f"{META_PREFIX}classes": json.dumps(list(model.classes)),
            f"{META_PREFIX}arch": json.dumps(model.arch),
            f"{META_PREFIX}config": json.dumps(cfg),
            f"{META_PREFIX}image_size": str(model.image_size),
            f"{META_PREFIX}channels": str(model.channels),
            f"{META_PREFIX}temperature": repr(float(model.temperature)),  # --calibrate's T
            f"{META_PREFIX}input": "float32 NCHW in [0, 1]; normalization is inside the graph"}


def sample_inputs(model: Predictor, n: int = 8, seed: int = 0) -> torch.Tensor:
    """Random images in [0, 1] of the model's input shape (checks use a batch size != export's)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, model.channels, model.image_size, model.image_size, generator=g)


def _export_onnx(module: torch.nn.Module, example: torch.Tensor, tmp: Path, opset: int,
                 meta: dict[str, str]) -> None:
    import onnx

    kwargs = dict(input_names=["image"], output_names=["logits"], opset_version=opset,
                  dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})
    with warnings.catch_warnings():
        # The TorchScript-based exporter works without onnxscript; its deprecation is noise here.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (example,), str(tmp), dynamo=False, **kwargs)
        except TypeError:  # a torch without the `dynamo` switch: the legacy exporter is default
            torch.onnx.export(module, (example,), str(tmp), **kwargs)
    proto = onnx.load(str(tmp))
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))


def _export_torchscript(module: torch.nn.Module, example: torch.Tensor, tmp: Path,
                        meta: dict[str, str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, example, check_trace=False)
        torch.jit.save(traced, str(tmp), _extra_files={TORCHSCRIPT_META: json.dumps(meta)})


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Run an ONNX file with onnxruntime on float32 NCHW input."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.astype(np.float32)})[0]


def export_model(weights: str | Path, fmt: str = "onnx", out: str | Path | None = None,
                 opset: int = 17, check: bool = True, samples: int = 8,
                 model: str | None = None, trust_code: bool = False) -> ExportResult:
    """Export a checkpoint; with `check`, compare the file's outputs with PyTorch's.
    `model`/`trust_code`: a custom model's builder, as for Predictor.load."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise CnnlabError(f"--format {fmt!r}: choose {' or '.join(FORMATS)}")
    if fmt == "onnx":
        require_onnx()
    weights = Path(weights)
    if weights.is_dir():
        weights = weights / "best.pt"
    if weights.suffix.lower() == ".onnx":
        raise CnnlabError(f"{weights}: already an ONNX file; export needs a cnnlab checkpoint")
    model = Predictor.load(weights, model=model, trust_code=trust_code)
    if fmt == "state_dict":
        return export_state_dict(model, weights, out, check, samples)
    module = model.module.float().eval().cpu()
    out = Path(out) if out is not None else weights.with_suffix(
        ".onnx" if fmt == "onnx" else ".torchscript.pt")
    meta = metadata(model)
    example = sample_inputs(model, 2, seed=1)
    try:
        with atomic_path(out) as tmp:
            if fmt == "onnx":
                _export_onnx(module, example, tmp, opset, meta)
            else:
                _export_torchscript(module, example, tmp, meta)
    except (CnnlabError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CnnlabError(f"{weights}: {fmt} export failed ({first[:200]})") from None
    diff = None
    if check and fmt == "onnx":
        diff = _max_diff(model, samples, lambda x: onnx_logits(out, x.numpy()))
    elif check:
        loaded = _jit_load(out)
        diff = _max_diff(model, samples, lambda x: loaded(x).numpy())
    return ExportResult(out, fmt, diff, samples if check else 0)


def _max_diff(model: Predictor, samples: int, run: Callable[[torch.Tensor], np.ndarray]
              ) -> float:
    """The largest |exported - PyTorch| logit on `samples` random images."""
    x = sample_inputs(model, samples)
    with torch.inference_mode():
        return float(np.abs(run(x) - model.module(x).numpy()).max())


def _jit_load(path: Path, **kwargs: object) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location="cpu", **kwargs)


def state_dict_sidecar(path: Path) -> Path:
    """The JSON file written beside an exported state_dict (mean, std, classes, ...)."""
    return Path(path).with_suffix(".json")


def export_state_dict(model: Predictor, weights: Path, out: str | Path | None = None,
                      check: bool = True, samples: int = 8) -> ExportResult:
    """Write the bare network's state_dict and its normalization/classes JSON beside it."""
    import io

    from cnnlab.checkpoint import atomic_write_bytes
    from cnnlab.models.record import rebuild

    module = model.module.float().eval().cpu()
    net = getattr(module, "net", None)
    if net is None:
        raise CnnlabError(f"{weights}: no bare network inside this model to export")
    out = Path(out) if out is not None else weights.with_suffix(".state_dict.pt")
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    mean = module.mean.flatten().tolist()
    std = module.std.flatten().tolist()
    info = {"model": model.arch["name"], "model_args": model.arch.get("args", {}),
            "num_classes": model.arch["num_classes"], "classes": list(model.classes),
            "in_channels": model.channels, "image_size": model.image_size,
            "mean": mean, "std": std,
            "input": "float NCHW in [0, 1], then (x - mean) / std per channel, e.g. "
                     f"transforms.Normalize({[round(v, 4) for v in mean]}, "
                     f"{[round(v, 4) for v in std]})",
            "weights": out.name}
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_bytes(state_dict_sidecar(out), (json.dumps(info, indent=2) + "\n").encode())
    diff = None
    if check:  # reload strictly into a freshly built network, as a student's code would
        # the record was checked (and a custom builder accepted) when the model was loaded
        fresh = rebuild(model.arch, source=weights, trust=True).net.float().eval()
        fresh.load_state_dict(torch.load(out, map_location="cpu", weights_only=True), strict=True)
        diff = _max_diff(model, samples, lambda x: fresh((x - module.mean) / module.std).numpy())
    return ExportResult(out, "state_dict", diff, samples if check else 0)


def read_torchscript_meta(path: str | Path) -> dict:
    """The cnnlab metadata stored in an exported TorchScript file."""
    files = {TORCHSCRIPT_META: ""}
    _jit_load(path, _extra_files=files)
    return json.loads(files[TORCHSCRIPT_META] or "{}")
