"""Test-time augmentation: score each image under a few fixed views and average probabilities.

A spec names view families, comma separated; the views are every combination of them:
- `flip`: the image and its left-right mirror (2 views);
- `vflip`: the image and its top-bottom mirror (2 views);
- `shift[=P]`: the image, and the image moved P pixels (default 1) down-right and up-left, the
  edge rows and columns repeated into the gap (3 views, as airbench's translate views).
`flip,shift` is 2 x 3 = 6 views; `none` is the image alone. Views act on uint8 NCHW images, so
they are exact and the same for any model backend (torch, ONNX). Probabilities are the plain
mean over the views of softmax(logits), tempered by --calibrate's T (see average_probs).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import torch

from cnnlab.errors import CnnlabError
from cnnlab.models.inference import evaluate_logits

View = Callable[[torch.Tensor], torch.Tensor]
FAMILIES = ("flip", "vflip", "shift")


def parse_tta(text: str | None) -> str:
    """A checked, canonical TTA spec: 'Flip, shift=2' -> 'flip,shift=2'; '' or None -> 'none'."""
    parts = [p.strip().lower() for p in str(text or "none").split(",") if p.strip()]
    if not parts or parts == ["none"]:
        return "none"
    seen, out = set(), []
    for part in parts:
        name, sep, val = part.partition("=")
        name = name.strip()
        if name not in FAMILIES:
            raise CnnlabError(f"--tta {text!r}: unknown view {name!r}; give none or a list of "
                              f"{', '.join(FAMILIES)} (e.g. flip,shift)")
        if name in seen:
            raise CnnlabError(f"--tta {text!r}: {name} is named twice")
        seen.add(name)
        if sep:
            if name != "shift" or not val.strip().isdigit() or not 1 <= int(val) <= 16:
                raise CnnlabError(f"--tta {text!r}: only shift takes a value, a whole number of "
                                  "pixels from 1 to 16 (shift=2)")
            part = f"shift={int(val)}"
        out.append(part)
    return ",".join(out)


def _shift(dy: int, dx: int) -> View:
    """Move the image by (dy, dx) pixels, repeating the edge into the gap."""
    def view(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        rows = (torch.arange(h, device=x.device) - dy).clamp_(0, h - 1)
        cols = (torch.arange(w, device=x.device) - dx).clamp_(0, w - 1)
        return x.index_select(-2, rows).index_select(-1, cols)
    return view


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def views(spec: str | None) -> list[View]:
    """The view functions of a spec, the identity first."""
    families: list[list[View]] = []
    for part in parse_tta(spec).split(","):
        name, _, val = part.partition("=")
        if name == "flip":
            families.append([_identity, lambda x: x.flip(-1)])
        elif name == "vflip":
            families.append([_identity, lambda x: x.flip(-2)])
        elif name == "shift":
            p = int(val or 1)
            families.append([_identity, _shift(p, p), _shift(-p, -p)])
    if not families:
        return [_identity]
    out = []
    for combo in itertools.product(*families):
        def view(x: torch.Tensor, combo: tuple = combo) -> torch.Tensor:
            for f in combo:
                x = f(x)
            return x
        out.append(view)
    return out


def view_logits(logits_fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                spec: str | None) -> torch.Tensor:
    """Logits [V, N, K] of every view of uint8 NCHW `images` (V = 1 without TTA)."""
    return torch.stack([logits_fn(v(images)) for v in views(spec)])


def average_probs(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Probabilities [N, K] from view logits [V, N, K] (or [N, K]), in the logits' dtype: the
    mean over views of softmax(logits), then tempered as softmax(log(mean) / T). One view gives
    exactly softmax(logits / T); with several, T scales the averaged prediction itself, so it
    can also sharpen views that disagree (tempering each view first could not)."""
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if logits.shape[0] == 1:  # no TTA: exactly softmax(logits / T), as before TTA existed
        return torch.softmax(logits[0] / temperature if temperature != 1.0 else logits[0], 1)
    probs = torch.softmax(logits, 2).mean(0)
    if temperature == 1.0:
        return probs
    tiny = torch.finfo(probs.dtype).tiny
    return torch.softmax(probs.clamp_min(tiny).log() / temperature, 1)


def nll(probs: torch.Tensor, labels: torch.Tensor) -> float | None:
    """Mean negative log-likelihood of the labeled items (label >= 0) under `probs`."""
    mask = labels >= 0
    if not bool(mask.any()):
        return None
    p = probs[mask].double().gather(1, labels[mask].view(-1, 1)).clamp_min(1e-12)
    return float(-p.log().mean())


def probs_and_loss(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
                   ) -> tuple[np.ndarray, float | None]:
    """(probabilities, mean NLL of the labeled items) from view logits [V, N, K] or [N, K].

    One view at T = 1 is exactly evaluate_logits (the numbers of runs without TTA or
    calibration do not move); otherwise the NLL of the averaged, tempered probabilities."""
    if logits.dim() == 2:
        logits = logits.unsqueeze(0)
    if logits.shape[0] == 1:
        z = logits[0] / temperature if temperature != 1.0 else logits[0]
        return evaluate_logits(z, labels)
    if not logits.numel():
        return np.zeros((0, 0)), None
    probs = average_probs(logits, temperature)
    return probs.numpy(), nll(probs, labels)
