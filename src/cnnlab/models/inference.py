"""Batched inference over uint8 image tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.batches import batch_slices, to_float


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
                   device: torch.device | str = "cpu", channels_last: bool = False,
                   autocast_ctx=None) -> torch.Tensor:  # noqa: ANN001
    """Logits (float32, CPU) for uint8 [N,C,H,W] images, in order."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for sl in batch_slices(images.shape[0], batch_size):
            x = to_float(images[sl], device, channels_last)
            if autocast_ctx is not None:
                with autocast_ctx():
                    logits = model(x)
            else:
                logits = model(x)
            out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, 0)
    return torch.cat(out)


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor,
                    weight: torch.Tensor | None = None) -> tuple[np.ndarray, float | None]:
    """(probabilities, mean cross-entropy over labeled items) from logits."""
    probs = F.softmax(logits, dim=1).numpy() if logits.numel() else np.zeros((0, 0))
    mask = labels >= 0
    loss = float(F.cross_entropy(logits[mask], labels[mask], weight=weight)) \
        if mask.any() else None
    return probs, loss
