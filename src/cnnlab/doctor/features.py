"""One pass over the images: hashes, thumbnails and the feature vectors the other checks share.

Features are either downscaled pixels reduced with PCA (fast, no weights needed) or the pooled
1280-d output of the pretrained EfficientNet-Lite0 backbone (better for photos, slower).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.doctor.hashing import digests, gray, phash

PIXEL_SIDE = 16  # pixel features: every image reduced to 16x16 per channel
CONFIRM_SIDE = 32  # near-duplicate confirmation compares 32x32 grayscale thumbnails
PCA_DIMS = 64
BLANK_STD = 2.0  # pixel standard deviation (0-255) below which an image is nearly constant
FEATURES = ("pixels", "backbone")


@dataclass
class Scan:
    """Per-image results of the single pass, in pool order."""

    hashes: np.ndarray  # uint64 [N]
    digests: list[bytes]
    thumbs: np.ndarray  # float32 [N, 32*32], zero mean and unit norm (0 for constant images)
    pixels: np.ndarray  # float32 [N, C*16*16] in [0, 1]
    std: np.ndarray  # float32 [N]: pixel standard deviation
    mean: np.ndarray  # float32 [N]: mean brightness


def scan(parts: list[torch.Tensor], chunk: int = 512,
         tick: Callable[[int], None] | None = None) -> Scan:
    """Hash, thumbnail and downscale every image of `parts` (uint8 [N,C,H,W] tensors)."""
    hashes, digs, thumbs, pixels, std, mean = [], [], [], [], [], []
    for images in parts:
        for s in range(0, images.shape[0], chunk):
            x = torch.as_tensor(np.asarray(images[s:s + chunk]))
            hashes.append(phash(x))
            digs += digests(x)
            g = F.interpolate(gray(x), size=(CONFIRM_SIDE, CONFIRM_SIDE), mode="bilinear",
                              antialias=True, align_corners=False).flatten(1)
            g = g - g.mean(1, keepdim=True)
            thumbs.append((g / g.norm(dim=1, keepdim=True).clamp_min(1e-3)).numpy())
            xf = x.float()
            pixels.append((F.interpolate(xf, size=(PIXEL_SIDE, PIXEL_SIDE), mode="bilinear",
                                         antialias=True, align_corners=False) / 255.0)
                          .flatten(1).numpy())
            std.append(xf.flatten(1).std(1).numpy())
            mean.append(xf.flatten(1).mean(1).numpy())
            if tick is not None:
                tick(x.shape[0])
    cat = (lambda a: np.concatenate(a)) if hashes else (lambda a: np.zeros(0))
    return Scan(cat(hashes).astype(np.uint64), digs, cat(thumbs).astype(np.float32),
                cat(pixels).astype(np.float32), cat(std).astype(np.float32),
                cat(mean).astype(np.float32))


def pixel_features(pixels: np.ndarray, dims: int = PCA_DIMS, seed: int = 0) -> np.ndarray:
    """Standardised downscaled pixels reduced to at most `dims` principal components."""
    from sklearn.decomposition import PCA

    x = pixels - pixels.mean(0)
    x /= x.std(0) + 1e-3
    k = min(dims, x.shape[0] - 1, x.shape[1])
    if k < 2:
        return x.astype(np.float32)
    z = PCA(k, svd_solver="randomized", random_state=seed).fit_transform(x)
    return (z / (z.std(0) + 1e-6)).astype(np.float32)


def backbone_features(parts: list[torch.Tensor], size: int = 224, batch: int = 64,
                      tick: Callable[[int], None] | None = None) -> np.ndarray:
    """Pooled EfficientNet-Lite0 (ImageNet) features [N, 1280] of every image."""
    from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD
    from cnnlab.models.efficientnet import efficientnet_lite0

    net = efficientnet_lite0(1000, 3, size, pretrained=True).eval()
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for images in parts:
            for s in range(0, images.shape[0], batch):
                x = torch.as_tensor(np.asarray(images[s:s + batch])).float() / 255.0
                if x.shape[1] == 1:
                    x = x.expand(-1, 3, -1, -1)
                if x.shape[-1] != size or x.shape[-2] != size:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                                      align_corners=False)
                f = net.extract_features((x - mean) / std).mean((2, 3))
                out.append(f.numpy())
                if tick is not None:
                    tick(x.shape[0])
    z = np.concatenate(out) if out else np.zeros((0, 1280), np.float32)
    return ((z - z.mean(0)) / (z.std(0) + 1e-3)).astype(np.float32)
