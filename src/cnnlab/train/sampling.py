"""Registry of samplers: the order in which an epoch visits the training images."""

from __future__ import annotations

from collections.abc import Callable

import torch

from cnnlab.data.batches import epoch_order

# sampler(labels, num_classes, seed, epoch) -> indices of one epoch (length = len(labels))
Sampler = Callable[[torch.Tensor, int, int, int], torch.Tensor]


def _shuffle(labels: torch.Tensor, num_classes: int, seed: int, epoch: int) -> torch.Tensor:
    return epoch_order(labels.shape[0], seed, epoch)


def _balanced(labels: torch.Tensor, num_classes: int, seed: int, epoch: int) -> torch.Tensor:
    # Each class equally likely per draw: rare classes are drawn (with replacement) more often.
    counts = torch.bincount(labels, minlength=num_classes).float()
    w = (1.0 / counts.clamp_min(1))[labels]
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.multinomial(w, labels.shape[0], replacement=True, generator=g)


SAMPLERS: dict[str, Sampler] = {"none": _shuffle, "balanced": _balanced}
