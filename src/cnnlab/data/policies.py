"""RandAugment and TrivialAugmentWide drawn per image, on whole float batches in [0, 1].

torchvision's definitions (op list, magnitude bins, posterize/solarize/enhance ranges, black
fill), vectorised: every image draws its own op(s), magnitude and sign; the geometric ones are
one affine `grid_sample` for the whole batch, each colour op one tensor expression on the
images that drew it. kornia's policies (augment.py `kornia_randaugment`, ...) draw one
sub-policy per batch instead; bench/augment.py times both.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

OPS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness",
       "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
BINS = 31  # torchvision's num_bins: magnitude index 0..30
# The largest magnitudes: RandAugment's (translate as a fraction of the side, 150/331) and
# TrivialAugmentWide's (translate in pixels).
RANGES = {False: {"shear": 0.3, "translate": 150 / 331, "rotate": 30.0, "enhance": 0.9,
                  "bits": 4},
          True: {"shear": 0.99, "translate": 32.0, "rotate": 135.0, "enhance": 0.99,
                 "bits": 6}}


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma [B,1,H,W] (ITU-R 601-2, as PIL and torchvision)."""
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(img: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """f * img + (1 - f) * other, clipped: PIL's ImageEnhance."""
    return (other + f.view(-1, 1, 1, 1) * (img - other)).clamp_(0, 1)


def _sharpen_base(x: torch.Tensor) -> torch.Tensor:
    """PIL's SMOOTH filter inside, the border pixels unchanged."""
    c = x.shape[1]
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], device=x.device, dtype=x.dtype) / 13
    smooth = F.conv2d(x, k.expand(c, 1, 3, 3), groups=c)
    out = x.clone()
    out[..., 1:-1, 1:-1] = smooth
    return out


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation per image and channel (torchvision's integer algorithm)."""
    b, c, h, w = x.shape
    v = (x * 255).round_().long().view(b * c, h * w)
    hist = torch.zeros(b * c, 256, device=x.device, dtype=torch.long)
    hist.scatter_add_(1, v, torch.ones_like(v))
    top = 255 - (hist.flip(1) > 0).long().argmax(1, keepdim=True)  # the largest value present
    step = (h * w - hist.gather(1, top)) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp_min(1)
    lut = torch.cat([torch.zeros_like(lut[:, :1]), lut[:, :-1]], 1).clamp_(0, 255)
    out = torch.where(step > 0, lut.gather(1, v), v)
    return (out.to(x.dtype) / 255).view(b, c, h, w)


def _geometric(x: torch.Tensor, k: torch.Tensor, m: torch.Tensor, r: dict) -> torch.Tensor:
    """One affine warp per image (black fill) by its op OPS[k] at signed magnitude m."""
    _, _, h, w = x.shape

    def only(name: str) -> torch.Tensor:
        return torch.where(k == OPS.index(name), m, torch.zeros_like(m))

    sx, sy = only("shear_x") * r["shear"] * h / w, only("shear_y") * r["shear"] * w / h
    per = r["translate"] < 1  # RandAugment: a fraction of the side; Wide: pixels
    tx = only("translate_x") * r["translate"] * (1 if per else 1 / w) * 2
    ty = only("translate_y") * r["translate"] * (1 if per else 1 / h) * 2
    a = torch.deg2rad(only("rotate") * r["rotate"])
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin * h / w + sx, tx], 1),
                         torch.stack([sin * w / h + sy, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def apply_ops(x: torch.Tensor, idx: torch.Tensor, level: torch.Tensor, wide: bool,
              sign: torch.Tensor | None = None) -> torch.Tensor:
    """Image i gets OPS[idx[i]] at magnitude level[i] / 30 with sign[i] (random when None)."""
    r = RANGES[wide]
    if sign is None:
        sign = torch.where(torch.rand(len(idx), device=x.device) < 0.5, -1.0, 1.0)
    frac = level.to(x.dtype) / (BINS - 1)
    out = x.clone()
    geo = [OPS.index(g) for g in GEOMETRIC]
    pick = torch.isin(idx, torch.tensor(geo, device=idx.device)).nonzero().flatten()
    if len(pick):
        out[pick] = _geometric(x[pick], idx[pick], (frac * sign)[pick], r)
    for k, name in enumerate(OPS):
        if name == "identity" or name in GEOMETRIC:
            continue
        pick = (idx == k).nonzero().flatten()
        if not len(pick):
            continue
        xs, m = x[pick], frac[pick]
        f = 1 + (m * sign[pick] * r["enhance"]).to(x.dtype)
        if name == "brightness":
            y = _blend(xs, torch.zeros_like(xs), f)
        elif name == "color":
            y = _blend(xs, _grey(xs).expand_as(xs), f)
        elif name == "contrast":
            y = _blend(xs, _grey(xs).mean((1, 2, 3), keepdim=True).expand_as(xs), f)
        elif name == "sharpness":
            y = _blend(xs, _sharpen_base(xs), f)
        elif name == "posterize":
            drop = 2 ** (m * r["bits"]).round().long().view(-1, 1, 1, 1)  # 8 - bits kept
            v = (xs * 255).floor().long()
            y = ((v - v % drop).to(x.dtype) / 255)
        elif name == "solarize":
            t = (1 - m).view(-1, 1, 1, 1) - 1e-4 / 255  # a pixel at the threshold flips
            y = torch.where(xs >= t, 1 - xs, xs)
        elif name == "autocontrast":
            lo = xs.amin((2, 3), keepdim=True)
            hi = xs.amax((2, 3), keepdim=True)
            y = torch.where(hi > lo, (xs - lo) / (hi - lo).clamp_min(1e-12), xs)
        else:  # equalize
            y = _equalize(xs)
        out[pick] = y
    return out


def randaugment(n: int = 2, m: int = 9) -> Callable[[torch.Tensor], torch.Tensor]:
    """RandAugment: n ops per image drawn uniformly from OPS, all at magnitude m of 30."""
    def op(x: torch.Tensor) -> torch.Tensor:
        for _ in range(n):
            idx = torch.randint(0, len(OPS), (x.shape[0],), device=x.device)
            x = apply_ops(x, idx, torch.full_like(idx, m), wide=False)
        return x
    return op


def trivialaugment(p: float = 1.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """TrivialAugmentWide: per image (with probability p) one op at a uniform magnitude bin."""
    def op(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        idx = torch.randint(0, len(OPS), (b,), device=x.device)
        level = torch.randint(0, BINS, (b,), device=x.device)
        if p < 1:
            idx = torch.where(torch.rand(b, device=x.device) < p, idx, 0)  # 0: identity
        return apply_ops(x, idx, level, wide=True)
    return op
