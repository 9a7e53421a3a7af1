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

from cnnlab.data.imageset import DataSplits
from cnnlab.models.inference import predict_logits
from cnnlab.settings import TrainConfig
from cnnlab.train.transfer import Frozen, head_of


class FeatureCache:
    """The head's input for every image of every split, and the head itself."""

    def __init__(self, model: nn.Module, splits: DataSplits, device: torch.device,
                 batch_size: int = 256, channels_last: bool = False,
                 autocast: Callable | None = None, eval_autocast: Callable | None = None
                 ) -> None:
        self.head = head_of(model.net)
        self.device = device
        self.features: dict[str, torch.Tensor] = {}
        t0 = time.perf_counter()
        captured: list[torch.Tensor] = []
        hook = self.head.register_forward_hook(
            lambda m, inp, out: captured.append(inp[0].detach().float().cpu()))
        try:
            for name, data in splits.items():
                captured.clear()
                if len(data):
                    # Train features as the training forward computes them; the others as
                    # validation and final scoring do, so cached and uncached runs agree.
                    predict_logits(model, data.images, batch_size, device, channels_last,
                                   autocast if name == "train" else eval_autocast or autocast)
                self.features[name] = torch.cat(captured) if captured else torch.zeros(0)
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
