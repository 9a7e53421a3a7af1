"""Online augmentation on whole float batches; parsed from one option string."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError

Augment = Callable[[torch.Tensor], torch.Tensor]


def _hflip(p: float) -> Augment:
    def op(x: torch.Tensor) -> torch.Tensor:
        m = torch.rand(x.shape[0], device=x.device) < p
        return torch.where(m.view(-1, 1, 1, 1), x.flip(3), x)
    return op


def _vflip(p: float) -> Augment:
    def op(x: torch.Tensor) -> torch.Tensor:
        m = torch.rand(x.shape[0], device=x.device) < p
        return torch.where(m.view(-1, 1, 1, 1), x.flip(2), x)
    return op


def _crop(pad: int) -> Augment:
    def op(x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        xp = F.pad(x, (pad, pad, pad, pad))
        dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
        rows = (dy.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (dx.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        return xp.permute(0, 2, 3, 1)[bi, rows, cols].squeeze(1).permute(0, 3, 1, 2)
    return op


OPS: dict[str, tuple[Callable[[float], Augment], float]] = {
    "hflip": (lambda v: _hflip(v), 0.5),
    "vflip": (lambda v: _vflip(v), 0.5),
    "crop": (lambda v: _crop(int(v)), 4),
}


def parse_spec(spec: str) -> list[tuple[str, float | None]]:
    """'hflip,rotate=20' -> [('hflip', None), ('rotate', 20.0)]."""
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, val = part.partition("=")
        name = name.strip().lower()
        if name not in OPS:
            raise CnnlabError(f"unknown augmentation {name!r}; choose from {', '.join(OPS)}")
        try:
            out.append((name, float(val) if val else None))
        except ValueError:
            raise CnnlabError(f"augmentation {name}: {val!r} is not a number") from None
    return out


def build_augment(spec: str | None) -> Augment | None:
    """A function applying every op of `spec` to a float [B,C,H,W] batch in [0, 1]."""
    if not spec:
        return None
    ops = [OPS[name][0](OPS[name][1] if val is None else val) for name, val in parse_spec(spec)]

    def apply(x: torch.Tensor) -> torch.Tensor:
        for op in ops:
            x = op(x)
        return x
    return apply
