"""Input normalization as the seeds write it: a spec string -> per-channel (mean, std) on 0..1.

Specs (`--normalize`):
- "train": the training split's own per-channel mean/std (cnnlab's default);
- "imagenet": mean 0.485,0.456,0.406, std 0.229,0.224,0.225 (grey images: their averages);
- "none": mean 0, std 1 (what ToTensor alone gives, inputs in 0..1);
- "MEAN,STD": one mean and one std for every channel, e.g. "0.5,0.5" is
  Normalize((0.5,)*3, (0.5,)*3);
- "m1,m2,m3,s1,s2,s3": per-channel means then stds; brackets and parentheses are ignored, so
  "[0.485, 0.456, 0.406], [0.229, 0.224, 0.225]" pasted from a seed works as written.
Numbers are on the 0..1 scale of ToTensor; a spec whose means exceed 1 is read on the 0..255
scale (EECS 445 reports its statistics that way) and divided by 255.
"""

from __future__ import annotations

import math
import re

import torch

from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD, channel_mean_std
from cnnlab.errors import CnnlabError


def parse_normalize(spec: str, channels: int,
                    train_images: torch.Tensor | None = None) -> tuple[list[float], list[float]]:
    """(mean, std) lists of length `channels` on the 0..1 scale for a --normalize spec."""
    text = str(spec).strip().lower()
    if text == "train":
        if train_images is None:
            raise CnnlabError("--normalize train needs the training images")
        return channel_mean_std(train_images)
    if text == "imagenet":
        if channels == 3:
            return list(IMAGENET_MEAN), list(IMAGENET_STD)
        return [sum(IMAGENET_MEAN) / 3] * channels, [sum(IMAGENET_STD) / 3] * channels
    if text == "none":
        return [0.0] * channels, [1.0] * channels
    parts = [p for p in re.split(r"[\s,;]+", re.sub(r"[\[\]()]", " ", text)) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise CnnlabError(f"--normalize {spec!r}: choose train, imagenet, none, MEAN,STD or "
                          f"{channels} means then {channels} stds") from None
    if len(values) == 2:
        mean, std = [values[0]] * channels, [values[1]] * channels
    elif len(values) == 2 * channels:
        mean, std = values[:channels], values[channels:]
    else:
        raise CnnlabError(f"--normalize {spec!r}: {len(values)} numbers for {channels}-channel "
                          f"images; give MEAN,STD or {channels} means then {channels} stds")
    if not all(math.isfinite(v) for v in values):
        raise CnnlabError(f"--normalize {spec!r}: numbers must be finite")
    if any(s <= 0 for s in std):
        raise CnnlabError(f"--normalize {spec!r}: every std must be above 0")
    if any(m > 1 for m in mean):  # statistics reported on the 0..255 scale
        mean, std = [m / 255.0 for m in mean], [s / 255.0 for s in std]
    return mean, std
