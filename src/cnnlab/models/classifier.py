"""A network with its input normalization and class names: what a checkpoint rebuilds."""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    """Takes float images in [0, 1], normalizes with the training statistics, returns logits."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        return self.net((x - self.mean) / self.std)
