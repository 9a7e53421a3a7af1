"""Batches are index slices of the in-memory uint8 tensor, converted to float on the fly."""

from __future__ import annotations

from collections.abc import Iterator

import torch


def to_float(images: torch.Tensor, device: torch.device | str = "cpu",
             channels_last: bool = False) -> torch.Tensor:
    """uint8 [B,C,H,W] -> float32 in [0, 1] on `device`."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of epoch `epoch`: a pure function of (seed, epoch), so resume is exact."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def batch_slices(n: int, batch_size: int, drop_last: bool = False) -> list[slice]:
    """Consecutive [start, stop) slices covering n items."""
    stops = range(0, n - (batch_size - 1 if drop_last else 0), batch_size)
    return [slice(s, min(s + batch_size, n)) for s in stops if s < n]


def iterate(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
            order: torch.Tensor | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches in `order` (default: as stored)."""
    for sl in batch_slices(images.shape[0], batch_size):
        idx = sl if order is None else order[sl]
        yield images[idx], labels[idx]
