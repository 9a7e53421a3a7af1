"""Per-channel statistics, computed on the training split only."""

from __future__ import annotations

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def channel_mean_std(images: torch.Tensor, chunk: int | None = None) -> tuple[list[float],
                                                                            list[float]]:
    """Mean and std per channel of uint8 [N,C,H,W] images, on the 0..1 scale."""
    c = images.shape[1]
    if images.dtype == torch.uint8 and images.numel():
        return _uint8_mean_std(images, chunk)
    if chunk is None:
        # ~1M values (8 MB as float64) at a time, whatever the image size: a memory-mapped set
        # larger than RAM streams through without ever being copied.
        chunk = max(1, (1 << 20) // max(1, images[:1].numel()))
    s = torch.zeros(c, dtype=torch.float64)
    s2 = torch.zeros(c, dtype=torch.float64)
    n = 0
    for part in torch.split(images, chunk):
        x = part.to(torch.float64)
        s += x.sum(dim=(0, 2, 3))
        s2 += x.square_().sum(dim=(0, 2, 3))
        n += x.shape[0] * x.shape[2] * x.shape[3]
    mean = s / max(n, 1) / 255.0
    var = (s2 / max(n, 1) / 255.0**2 - mean * mean).clamp_min(0)
    std = var.sqrt().clamp_min(1e-3)
    return mean.tolist(), std.tolist()


def _uint8_mean_std(images: torch.Tensor, chunk: int | None = None) -> tuple[list[float],
                                                                             list[float]]:
    """channel_mean_std of uint8 images from a 256-bin histogram per channel: exact integer
    sums, 2.5-5x faster than summing float64 copies (1,215 photos at 224 px: 1.8-3.6 s
    against 8.6-9.6 s on the loaded 2-core machine, same figures to 1e-16)."""
    c = images.shape[1]
    if chunk is None:  # ~4M values (4 MB of uint8) at a time: a memmap streams through
        chunk = max(1, (1 << 22) // max(1, images[:1].numel()))
    levels = torch.arange(256, dtype=torch.int64)
    s = torch.zeros(c, dtype=torch.int64)
    s2 = torch.zeros(c, dtype=torch.int64)
    for part in torch.split(images, chunk):
        flat = part.transpose(0, 1).reshape(c, -1)
        for k in range(c):
            h = torch.bincount(flat[k], minlength=256)
            s[k] += (h * levels).sum()
            s2[k] += (h * levels * levels).sum()
    n = max(images.shape[0] * images.shape[2] * images.shape[3], 1)
    mean = s.double() / n / 255.0
    var = (s2.double() / n / 255.0**2 - mean * mean).clamp_min(0)
    return mean.tolist(), var.sqrt().clamp_min(1e-3).tolist()
