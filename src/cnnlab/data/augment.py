"""Online augmentation on whole float batches, parsed from one option string.

`build_augment("hflip,rotate=20,jitter=0.2,crop=4")` returns a function on float [B,C,H,W]
batches in [0, 1] that draws fresh random parameters per image from torch's global generator
(so the trainer's per-epoch seeding makes runs and resumes reproducible). Rotation, blur and
colour jitter use kornia; flips, crop, rrc, grayscale and noise are a few tensor operations,
because those measured faster than kornia's versions (see bench/augment.py). randaugment and
trivialaugment draw ops per image (data/policies.py); kornia_randaugment,
kornia_trivialaugment, autoaugment and erasing are kornia's modules.

The same ops serve the offline writer (data/offline_augment.py) with `always=True`: every
probabilistic op is then applied to every copy (the EECS 445 Grayscale() always greys).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError

Augment = Callable[[torch.Tensor], torch.Tensor]


def _chance(x: torch.Tensor, p: float) -> torch.Tensor:
    """Boolean [B,1,1,1]: which images of the batch an op with probability p touches."""
    return (torch.rand(x.shape[0], device=x.device) < p).view(-1, 1, 1, 1)


def hflip(p: float = 0.5) -> Augment:
    """Mirror left-right with probability p."""
    def op(x: torch.Tensor) -> torch.Tensor:
        return torch.where(_chance(x, p), x.flip(3), x)
    return op


def vflip(p: float = 0.5) -> Augment:
    """Mirror top-bottom with probability p."""
    def op(x: torch.Tensor) -> torch.Tensor:
        return torch.where(_chance(x, p), x.flip(2), x)
    return op


def rotate(deg: float = 15.0) -> Augment:
    """Rotate by an angle drawn uniformly from [-deg, deg]; corners filled with black."""
    from kornia.geometry.transform import rotate as k_rotate

    def op(x: torch.Tensor) -> torch.Tensor:
        angle = (torch.rand(x.shape[0], device=x.device) * 2 - 1) * deg
        return k_rotate(x, angle.to(x.dtype), mode="bilinear", padding_mode="zeros")
    return op


def grayscale(p: float = 0.1) -> Augment:
    """With probability p, replace every channel by the channel mean (EECS 445's grayscale)."""
    def op(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x
        return torch.where(_chance(x, p), x.mean(1, keepdim=True).expand_as(x), x)
    return op


def jitter(s: float = 0.2) -> Augment:
    """Colour jitter: brightness, contrast and saturation factors drawn from [1-s, 1+s]."""
    import kornia.augmentation as K

    # kornia's fused ColorJitter measured ~4x faster than three blends written out here.
    aug = K.ColorJitter(s, s, s if s <= 1 else 1.0, 0.0, p=1.0)

    def op(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # saturation needs colour: jitter the grey image as RGB
            return aug(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True)
        return aug(x)
    return op


def rrc(scale: float = 0.08) -> Augment:
    """Random resized crop: area in [scale, 1], aspect 3/4..4/3, resized back to H x W."""
    lo, hi = math.log(3 / 4), math.log(4 / 3)

    def op(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        dev, dt = x.device, x.dtype
        area = scale + torch.rand(b, device=dev, dtype=dt) * (1 - scale)
        ratio = torch.exp(lo + torch.rand(b, device=dev, dtype=dt) * (hi - lo))
        sw = torch.sqrt(area * ratio).clamp(max=1.0)  # box size as a fraction of the image
        sh = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(b, device=dev, dtype=dt) * 2 - 1) * (1 - sw)
        cy = (torch.rand(b, device=dev, dtype=dt) * 2 - 1) * (1 - sh)
        zero = torch.zeros_like(sw)
        theta = torch.stack([torch.stack([sw, zero, cx], 1), torch.stack([zero, sh, cy], 1)], 1)
        # One affine grid_sample for the whole batch: ~5x faster than kornia's RandomResizedCrop.
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return op


def crop(pad: int = 4) -> Augment:
    """Random crop of the zero-padded image: a translation by up to `pad` pixels each way."""
    def op(x: torch.Tensor) -> torch.Tensor:
        if pad == 0:
            return x
        b, c, h, w = x.shape
        hp, wp = h + 2 * pad, w + 2 * pad
        xp = F.pad(x, (pad, pad, pad, pad)).reshape(b * c, hp * wp)
        dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        # One gather over flattened planes: ~4x faster than kornia's RandomCrop (bench/augment.py).
        start = (dy * wp + dx).repeat_interleave(c).view(b * c, 1)
        window = (torch.arange(h, device=x.device).view(h, 1) * wp
                  + torch.arange(w, device=x.device).view(1, w)).view(1, h * w)
        return xp.gather(1, start + window).view(b, c, h, w)
    return op


def blur(sigma: float = 1.0) -> Augment:
    """Gaussian blur with a per-image sigma drawn from [0.1, sigma]."""
    from kornia.filters import gaussian_blur2d

    def op(x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        k = 2 * math.ceil(3 * sigma) + 1
        k = max(3, min(k, (min(h, w) // 2) * 2 - 1))
        s = 0.1 + torch.rand(b, device=x.device, dtype=x.dtype) * max(sigma - 0.1, 0.0)
        return gaussian_blur2d(x, (k, k), torch.stack([s, s], 1), border_type="reflect")
    return op


def noise(std: float = 0.05) -> Augment:
    """Add Gaussian noise N(0, std^2) (on the 0..1 scale) and clip back to [0, 1]."""
    def op(x: torch.Tensor) -> torch.Tensor:
        return (x + torch.randn_like(x) * std).clamp_(0, 1)
    return op


def _policy(make: Callable[[], torch.nn.Module], p: float = 1.0) -> Augment:
    """A kornia policy as an op, applied to a batch with probability p; kornia draws the
    sub-policy once per batch (every image of a batch gets the same ops, with its own random
    magnitudes), so batches differ, not images."""
    aug = make()

    def op(x: torch.Tensor) -> torch.Tensor:
        if p < 1 and float(torch.rand(())) >= p:
            return x
        if x.shape[1] == 1:  # colour ops (saturation) need RGB: run on grey-as-RGB, exact mean
            return aug(x.expand(-1, 3, -1, -1)).mean(1, keepdim=True).clamp_(0, 1)
        return aug(x).clamp_(0, 1)  # enhance ops can step a hair outside [0, 1]
    return op


def randaugment(value: float | tuple[int, int] = 9) -> Augment:
    """RandAugment (Cubuk et al.), per image: N random ops at magnitude M of 30; value M or
    (N, M) (data/policies.py)."""
    from cnnlab.data.policies import randaugment as ours

    n, m = value if isinstance(value, tuple) else (2, value)
    return ours(int(n), int(m))


def trivialaugment(p: float = 1.0) -> Augment:
    """TrivialAugmentWide (Müller & Hutter), per image: one random op at a random magnitude,
    with probability p (data/policies.py)."""
    from cnnlab.data.policies import trivialaugment as ours

    return ours(p)


def kornia_randaugment(value: float | tuple[int, int] = 9) -> Augment:
    """kornia's RandAugment: N ops at magnitude M of 30, one draw of ops per batch."""
    from kornia.augmentation.auto import RandAugment

    n, m = value if isinstance(value, tuple) else (2, value)
    return _policy(lambda: RandAugment(n=int(n), m=int(m)))


def kornia_trivialaugment(p: float = 1.0) -> Augment:
    """kornia's TrivialAugment: one op per batch, probability p per batch."""
    from kornia.augmentation.auto import TrivialAugment

    return _policy(TrivialAugment, p)


def autoaugment(p: float = 1.0) -> Augment:
    """AutoAugment's CIFAR-10 policy (Cubuk et al.), probability p per batch."""
    from kornia.augmentation.auto import AutoAugment

    return _policy(lambda: AutoAugment("cifar10"), p)


def erasing(p: float = 0.25) -> Augment:
    """Random erasing (Zhong et al.): with probability p per image, a box of 2-33% of the area
    (aspect 0.3..3.3) is set to 0."""
    import kornia.augmentation as K

    aug = K.RandomErasing(scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0.0, p=p)

    def op(x: torch.Tensor) -> torch.Tensor:
        return aug(x) if p > 0 else x
    return op


def _n_m(text: str) -> tuple[int, int] | float:
    """randaugment's value: 'M' or 'N:M' (N ops, magnitude M)."""
    if ":" not in text:
        return float(text)
    n, _, m = text.partition(":")
    n_i, m_i = int(n), int(m)
    if not (1 <= n_i <= 5):
        raise ValueError
    return (n_i, m_i)


@dataclass(frozen=True)
class OpInfo:
    """An augmentation op: its factory, default value, valid range and meaning."""

    make: Callable[[float], Augment]
    default: float
    lo: float
    hi: float
    help: str
    probability: bool = False  # the value is a probability (offline: 1 unless given)
    integer: bool = False
    text: Callable[[str], object] | None = None  # value text -> value, when not one number


OPS: dict[str, OpInfo] = {
    "hflip": OpInfo(hflip, 0.5, 0, 1, "horizontal flip, probability", probability=True),
    "vflip": OpInfo(vflip, 0.5, 0, 1, "vertical flip, probability", probability=True),
    "rotate": OpInfo(rotate, 15, 0, 180, "rotation by up to ±deg, black fill"),
    "grayscale": OpInfo(grayscale, 0.1, 0, 1, "grayscale, probability", probability=True),
    "jitter": OpInfo(jitter, 0.2, 0, 1, "brightness/contrast/saturation jitter strength"),
    "rrc": OpInfo(rrc, 0.08, 0.01, 1, "random resized crop, smallest area fraction"),
    "crop": OpInfo(lambda v: crop(int(v)), 4, 0, 64, "random crop after zero padding (pixels)",
                   integer=True),
    "blur": OpInfo(blur, 1.0, 0.1, 10, "Gaussian blur, largest sigma (pixels)"),
    "noise": OpInfo(noise, 0.05, 0, 1, "Gaussian noise std (0..1 scale)"),
    "randaugment": OpInfo(randaugment, 9, 0, 30, "RandAugment per image: magnitude M of 30 "
                          "with N=2 ops, or N:M", integer=True, text=_n_m),
    "trivialaugment": OpInfo(trivialaugment, 1.0, 0, 1, "TrivialAugmentWide per image, "
                             "probability", probability=True),
    "kornia_randaugment": OpInfo(kornia_randaugment, 9, 0, 30, "kornia's RandAugment (ops "
                                 "drawn per batch): M or N:M", integer=True, text=_n_m),
    "kornia_trivialaugment": OpInfo(kornia_trivialaugment, 1.0, 0, 1, "kornia's "
                                    "TrivialAugment (op drawn per batch), probability"),
    "autoaugment": OpInfo(autoaugment, 1.0, 0, 1, "AutoAugment CIFAR-10 policy, probability "
                          "per batch"),
    "erasing": OpInfo(erasing, 0.25, 0, 1, "random erasing, probability per image",
                      probability=True),
}


def parse_spec(spec: str) -> list[tuple[str, float | tuple | None]]:
    """'hflip,rotate=20' -> [('hflip', None), ('rotate', 20.0)], validating names and values."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, val = part.partition("=")
        name = name.strip().lower()
        if name not in OPS:
            raise CnnlabError(f"unknown augmentation {name!r}; choose from {', '.join(OPS)}")
        info = OPS[name]
        if not val.strip():
            out.append((name, None))
            continue
        try:
            v = info.text(val) if info.text else float(val)
        except ValueError:
            what = "not N:M" if info.text else "not a number"
            raise CnnlabError(f"augmentation {name}: {val!r} is {what}") from None
        if isinstance(v, tuple):
            if not info.lo <= v[1] <= info.hi:
                raise CnnlabError(f"augmentation {name}={val}: M must be a whole number from "
                                  f"{info.lo:g} to {info.hi:g}")
        elif not info.lo <= v <= info.hi or (info.integer and v != int(v)):
            kind = "a whole number" if info.integer else "a number"
            raise CnnlabError(f"augmentation {name}={val}: must be {kind} from {info.lo:g} to "
                              f"{info.hi:g} ({info.help})")
        out.append((name, v))
    return out


def build_augment(spec: str | None, always: bool = False) -> Augment | None:
    """A function applying every op of `spec`, in order, to a float [B,C,H,W] batch in [0, 1].

    With `always`, ops whose value is a probability default to 1 (apply to every image).
    """
    if not spec or spec.strip().lower() == "none":
        return None
    ops = []
    for name, val in parse_spec(spec):
        info = OPS[name]
        if val is None:
            val = 1.0 if always and info.probability else info.default
        ops.append(info.make(val))

    def apply(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op(x)
        return x
    return apply
