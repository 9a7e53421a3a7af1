"""The predictor for the report's many forward passes: an exported float32 engine where it pays."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.evaluate.predictor import Predictor


def fast_predictor(predictor: Predictor, precision: str | None, n_images: int = 0,
                   exported: object = None) -> Predictor:
    """The predictor for the report's many forward passes: `exported` (the model already in an
    engine, run.py exported_model) when given; else, on a CPU with OpenVINO or onnxruntime, the
    network exported to ONNX (float32; the fastest engines measured here,
    models/feature_engine.py) when `n_images` pays the export; else bf16 with a channels_last
    copy of the network where `precision` is bf16; else the predictor itself."""
    import copy

    import torch

    from cnnlab.models.feature_engine import ExportedModule, engine_for

    engine = engine_for(predictor.device, n_images)
    if exported is None and engine != "torch":
        try:
            side, ch = predictor.image_size, predictor.channels
            exported = ExportedModule(predictor.module, torch.zeros(1, ch, side, side), engine)
        except Exception:  # noqa: BLE001 - a network ONNX cannot export: the torch path
            exported = None
    if exported is not None:
        fast = copy.copy(predictor)
        fast.module, fast.precision, fast.engine = exported, "32", exported.engine
        return fast
    if precision != "bf16" or predictor.precision == "bf16":
        return predictor
    fast = copy.copy(predictor)
    fast.module = copy.deepcopy(predictor.module).to(memory_format=torch.channels_last)
    fast.precision = "bf16"
    fast.channels_last = True
    return fast


def engine_text(predictor: Predictor) -> str:
    """'float32, OpenVINO' / 'bfloat16' / 'float32': how the robustness passes ran."""
    from cnnlab.models.feature_engine import LABEL

    name = {"bf16": "bfloat16", "32": "float32"}.get(predictor.precision, predictor.precision)
    label = LABEL.get(predictor.engine)
    return name + (f", {label}" if label else "")
