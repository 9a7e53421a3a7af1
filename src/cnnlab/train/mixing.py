"""Training targets and loss: label smoothing, MixUp and CutMix of whole batches.

A mixed batch trains on lam * loss(y) + (1 - lam) * loss(y_b), with y_b the labels of the
batch reversed (the partner of image i is image n-1-i, as in timm). The epoch line's training
accuracy of a mixed batch counts a prediction as right when it names the DOMINANT label (y when
lam >= 0.5, else y_b): the label that holds most of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from cnnlab.settings import TrainConfig


@dataclass
class Mixed:
    """The two label sets of a mixed batch and the weight of the first."""

    y: torch.Tensor
    y_b: torch.Tensor
    lam: float

    @property
    def dominant(self) -> torch.Tensor:
        """The label holding most of each image (what the training accuracy is measured on)."""
        return self.y if self.lam >= 0.5 else self.y_b

    @property
    def shape(self) -> torch.Size:
        """Like the label tensor's."""
        return self.y.shape

    def chunk(self, sl: slice) -> Mixed:
        """The targets of a slice of the batch (gradient accumulation)."""
        return Mixed(self.y[sl], self.y_b[sl], self.lam)


Targets = torch.Tensor | Mixed


def hard_labels(y: Targets) -> torch.Tensor:
    """Labels to count accuracy against: the labels, or a mixed batch's dominant ones."""
    return y.dominant if isinstance(y, Mixed) else y


def batch_loss(logits: torch.Tensor, y: Targets, weight: torch.Tensor | None = None,
               smoothing: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy with label smoothing; a mixed batch's is lam * CE(y) + (1 - lam) * CE(y_b)."""
    ce = partial(F.cross_entropy, logits.float(), weight=weight, label_smoothing=smoothing,
                 reduction=reduction)
    if isinstance(y, Mixed):
        return y.lam * ce(y.y) + (1 - y.lam) * ce(y.y_b)
    return ce(y)


class BatchMixer:
    """MixUp / CutMix of whole batches: the batch transform behind --mixup and --cutmix."""

    def __init__(self, mixup: float, cutmix: float, prob: float, off_epochs: int, epochs: int,
                 seed: int) -> None:
        self.mixup, self.cutmix, self.prob = mixup, cutmix, prob
        self.last_epoch = epochs - off_epochs  # epochs >= this one (0-based) are not mixed
        self.seed = seed

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int, step: int
                 ) -> tuple[torch.Tensor, Targets]:
        """The batch mixed (or not) and its targets.

        The draws come from a generator seeded by (seed, epoch, step), not from torch's global
        one: mixing leaves dropout and augmentation draws as they were, and a resumed run mixes
        exactly as the uninterrupted one would.
        """
        if epoch >= self.last_epoch or x.shape[0] < 2:
            return x, y
        rng = np.random.default_rng([self.seed, epoch, step, 0x4D1C])
        if rng.random() >= self.prob:
            return x, y
        use_cut = self.cutmix > 0 and (self.mixup <= 0 or rng.random() < 0.5)
        alpha = self.cutmix if use_cut else self.mixup
        lam = float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
        if not math.isfinite(lam):  # Beta(a, a) for a tiny a: 0 or 1 (nan in numpy's corner)
            lam = 1.0
        partner = x.flip(0)
        if use_cut:
            h, w = x.shape[-2:]
            ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
            cy, cx = int(rng.integers(h)), int(rng.integers(w))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2 + ch % 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2 + cw % 2, w)
            x = x.clone()
            x[..., y0:y1, x0:x1] = partner[..., y0:y1, x0:x1]
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
        else:
            x = x * lam + partner * (1 - lam)
        return x, Mixed(y, y.flip(0), lam)


def build_mixer(cfg: TrainConfig) -> BatchMixer | None:
    """The batch mixer of a config, or None when --mixup and --cutmix are off."""
    mixup, cutmix = cfg.mixup or 0.0, cfg.cutmix or 0.0
    if mixup <= 0 and cutmix <= 0:
        return None
    return BatchMixer(mixup, cutmix, cfg.mix_prob, cfg.mix_off_epochs, cfg.epochs, cfg.seed)
