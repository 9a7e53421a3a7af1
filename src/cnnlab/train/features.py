"""Feature cache: with a frozen backbone and no augmentation, run the backbone once per split.

The head's input for every image never changes while only the head trains (train/transfer.py
keeps the frozen backbone in eval mode), so it is computed once, kept in memory, and each
epoch trains the head on those vectors: the seed's 6-10 minute frozen-ResNet run becomes one
pass over the images plus seconds. The result is the same model as training through the
frozen backbone, up to float rounding (tests/test_transfer.py checks it).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import nn

from cnnlab.data import feature_store
from cnnlab.data.batches import to_float
from cnnlab.data.imageset import DataSplits
from cnnlab.models.inference import fold_batchnorm, predict_logits
from cnnlab.settings import TrainConfig
from cnnlab.train.transfer import Frozen, head_of

# Images per forward pass of the feature pass: bench/feature_engines.py on 2 cores (bf16,
# channels_last) found 64 as fast as or faster than 32 and 256; larger batches only add memory.
FEATURE_BATCH = 64


class FeatureCache:
    """The head's input for every image of every split, and the head itself."""

    def __init__(self, model: nn.Module, splits: DataSplits, device: torch.device,
                 channels_last: bool = False, autocast: Callable | None = None,
                 keys: dict[str, str] | None = None, fold: bool = True,
                 engine: str = "torch") -> None:
        """`autocast` computes every split's features; `keys` ({split: feature_store key})
        reads and writes them on disk. `fold`: run the pass on a copy with BatchNorm folded
        into the convolutions (checked against the model on one image; models/inference.py
        fold_batchnorm). `engine` "openvino" or "onnxruntime": the pass runs in that engine,
        float32 (models/feature_engine.py)."""
        self.head = head_of(model.net)
        self.device = device
        self.features: dict[str, torch.Tensor] = {}
        self.reused = 0  # images whose features came from the store
        t0 = time.perf_counter()
        self.folded = 0  # BatchNorm layers folded into convolutions for the pass
        stored = {name: feature_store.load_features(keys[name], len(data))
                  if keys and keys.get(name) and len(data) else None
                  for name, data in splits.items()}
        todo = [(n, d) for n, d in splits.items() if stored[n] is None and len(d)]
        self.engine = engine
        self.exported = None  # the exported backbone engine, when one computed the features
        if engine != "torch" and todo:
            from cnnlab.models.feature_engine import ExportedFeatures, headless

            try:
                self.exported = ExportedFeatures(headless(model, self.head),
                                                 to_float(todo[0][1].images[:1]), engine)
            except Exception:  # noqa: BLE001 - a network ONNX cannot export: torch computes
                self.engine, keys = "torch", None  # (and stores nothing under ONNX's key)
        if self.exported is not None:
            for name, data in todo:
                stored[name] = self.exported(data.images)
                if keys and keys.get(name):
                    feature_store.save_features(keys[name], stored[name])
                self.reused -= len(data)  # computed here, not read: the loop below counts all
            todo = []
        engine = model
        if fold and todo:
            engine, self.folded = fold_batchnorm(model, to_float(todo[0][1].images[:1], device))
        captured: list[torch.Tensor] = []
        hook = head_of(engine.net).register_forward_hook(
            lambda m, inp, out: captured.append(inp[0].detach().float().cpu()))
        try:
            for name, data in splits.items():
                if stored[name] is not None:
                    self.features[name] = stored[name]
                    self.reused += len(data)
                    continue
                captured.clear()
                if len(data):
                    predict_logits(engine, data.images, FEATURE_BATCH, device, channels_last,
                                   autocast)
                self.features[name] = torch.cat(captured) if captured else torch.zeros(0)
                key = (keys or {}).get(name)
                if key and len(data):
                    feature_store.save_features(key, self.features[name])
        finally:
            hook.remove()
        self.seconds = time.perf_counter() - t0
        self.count = sum(len(d) for _, d in splits.items())

    def get(self, split: str) -> torch.Tensor | None:
        """Cached features of a split (None when the split is absent)."""
        return self.features.get(split)

    @torch.inference_mode()
    def logits(self, split: str, batch_size: int = 4096) -> torch.Tensor:
        """Logits of the head on a cached split (float32, CPU)."""
        was = self.head.training
        self.head.eval()
        try:
            feats = self.features[split]
            out = [self.head(feats[i:i + batch_size].to(self.device)).float().cpu()
                   for i in range(0, feats.shape[0], batch_size)]
        finally:
            self.head.train(was)
        return torch.cat(out) if out else torch.zeros(0, 0)


def should_cache(cfg: TrainConfig, frozen: Frozen | None) -> bool:
    """Cache when everything but the head is frozen, nothing augments and it is not disabled."""
    augmenting = bool(cfg.augment) and str(cfg.augment).strip().lower() != "none"
    if not cfg.feature_cache or frozen is None or not frozen.all or augmenting:
        return False
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return False  # each rank would hold all features; DDP expects the full model
    return True


def precision_name(precision: str) -> str:
    """'bf16' -> 'bfloat16', '32' -> 'float32' (for messages)."""
    return {"bf16": "bfloat16", "32": "float32", "16-mixed": "float16"}.get(precision, precision)


def feature_keys(cfg: TrainConfig, splits: DataSplits, model: nn.Module, precision: str
                 ) -> dict[str, str]:
    """The feature store key of each split read from image files (data/feature_store.py);
    {} when the decode cache is off or the images are not files."""
    from pathlib import Path

    from cnnlab.settings import data_options

    opts = data_options(cfg.to_dict())
    if not opts.use_cache or cfg.data is None:
        return {}
    fmt = splits.train.meta.get("format") or opts.format
    root = feature_store.files_root(Path(cfg.data), fmt, opts.image_dir)
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if root is None or mean is None or std is None:
        return {}
    digest = feature_store.weights_digest(model.net, head_of(model.net))
    keys = {}
    for name, data in splits.items():
        files = feature_store.files_of(list(data.ids), root) if len(data) else None
        if files:
            keys[name] = feature_store.feature_key(
                files, digest, int(data.images.shape[-1]), opts.resize, opts.crop_size,
                mean.flatten().tolist(), std.flatten().tolist(), precision)
    return keys


def store_precision(engine: str, precision: str) -> str:
    """How the feature store names an engine and precision: 'ov-32', 'ort-32', 'bf16', '32'."""
    from cnnlab.models.feature_engine import PRECISION_TAG

    return PRECISION_TAG.get(engine, precision)
