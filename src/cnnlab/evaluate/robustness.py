"""Robustness probes (CS 475 1.8.5-1.8.11): accuracy under Gaussian noise, flips and rotations.

Every perturbed image is what `predict` would see if given the perturbed float array: the
change is made on the 0..1 scale in float64, then clipped to 0..1 and rounded to 8 bits
(data/value_range.py scale_to_uint8, as predict reads floats), and scored by the predictor
itself (its test-time views and temperature). So adding NOISE_DEFINITION's noise by hand and
calling `predict` gives the same accuracy as the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.batches import batch_slices
from cnnlab.data.imageset import ImageSet
from cnnlab.data.value_range import scale_to_uint8
from cnnlab.errors import DataError

# Noise std as a fraction of each image's range; 0.1 is CS 475's "one tenth of the range".
NOISE_FRACTIONS = (0.05, 0.1, 0.2)
ROTATIONS = (5, 15)
EXAMPLE_ROWS = ("clean", "noise 0.1", "hflip", "vflip", "rotate 15")
NOISE_DEFINITION = (
    "noise F: each image x (pixels on 0..1) becomes x + z * (F * (max(x) - min(x))), z = "
    "numpy.random.default_rng(SEED).standard_normal(shape) for the [N, C, H, W] images scored "
    "(the split's labeled images, in order; the same z for every F), then clipped to 0..1 and "
    "rounded to 8 bits: what predict does with that float array")

Perturb = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]


@dataclass
class Perturbation:
    """A named change of the model input (float64 images [B,C,H,W] on the 0-1 scale)."""

    name: str
    description: str
    fn: Perturb
    # The same change made on the uint8 images directly, where it moves pixels without changing
    # their values (flips): equal to `fn` then clipping and rounding, without the float copies.
    exact_uint8: Callable[[torch.Tensor], torch.Tensor] | None = None
    # The images unchanged (the clean row): predictions already made for them can be reused.
    identity: bool = False


def image_range(x: torch.Tensor) -> torch.Tensor:
    """max - min of each image's pixel values, shape [B,1,1,1] (CS 475's 'image's range')."""
    flat = x.flatten(1)
    return (flat.amax(1) - flat.amin(1)).view(-1, 1, 1, 1)


def add_noise(x: torch.Tensor, fraction: float, rng: np.random.Generator) -> torch.Tensor:
    """Gaussian noise with std = fraction x the image's range (NOISE_DEFINITION, before the
    clipping and rounding that `perturb` applies)."""
    z = torch.from_numpy(rng.standard_normal(tuple(x.shape))).to(x.dtype)
    return x + z * (fraction * image_range(x))


def perturb(images: torch.Tensor, p: Perturbation, rng: np.random.Generator) -> torch.Tensor:
    """uint8 [B,C,H,W] images after `p`, as predict would read the perturbed floats: clipped to
    0..1 and rounded to 8 bits."""
    if p.exact_uint8 is not None:
        return p.exact_uint8(images.cpu())
    x = images.cpu().to(torch.float64) / 255.0
    out, _ = scale_to_uint8(p.fn(x, rng), (0.0, 1.0))  # a tensor: scaled in torch's threads
    return torch.from_numpy(out)


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate counter-clockwise about the centre; corners fill with black (0)."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    theta = torch.tensor([[c, s, 0.0], [-s, c, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def default_perturbations(noise: tuple[float, ...] = NOISE_FRACTIONS,
                          rotations: tuple[float, ...] = ROTATIONS) -> list[Perturbation]:
    """Noise at several levels, horizontal and vertical flip, small rotations."""
    out = [Perturbation("clean", "unchanged images", lambda x, g: x, lambda u: u, identity=True)]
    for f in noise:
        cs = " (CS 475: range/10)" if abs(f - 0.1) < 1e-9 else ""
        out.append(Perturbation(f"noise {f:g}", f"Gaussian noise, std = {f:g} x image range{cs}"
                                ", clipped to 0..1",
                                lambda x, g, f=f: add_noise(x, f, g)))
    for name, what, dim in (("hflip", "horizontal flip (mirror left-right)", 3),
                            ("vflip", "vertical flip (upside down)", 2)):
        out.append(Perturbation(name, what, lambda x, g, d=dim: torch.flip(x, dims=[d]),
                                lambda u, d=dim: torch.flip(u, dims=[d])))
    for d in rotations:
        out.append(Perturbation(f"rotate {d:g}", f"rotation by {d:g} degrees, black corners",
                                lambda x, g, d=d: rotate(x, d)))
    return out


def perturbed_probs(predictor: object, images: torch.Tensor, p: Perturbation, seed: int = 0,
                    batch_size: int = 256) -> np.ndarray:
    """The predictor's class probabilities of uint8 [N,C,H,W] images after perturbation `p`
    (noise drawn from numpy.random.default_rng(seed), batch after batch)."""
    rng = np.random.default_rng(seed)
    out = [predictor.probabilities(perturb(images[sl], p, rng))  # type: ignore[attr-defined]
           for sl in batch_slices(images.shape[0], batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, 0))


def sample_items(n_total: int, max_items: int | None, seed: int = 0) -> np.ndarray:
    """All indices, or a seeded sample of max_items of them (sorted)."""
    if max_items is None or n_total <= max_items:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:max_items])


def stratified_items(labels: np.ndarray, max_items: int | None, seed: int = 0) -> np.ndarray:
    """Indices (sorted) of at most max_items of `labels`, each class in its share (largest
    remainders; every class present keeps at least one), seeded; all when they fit."""
    n = len(labels)
    if max_items is None or n <= max_items:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    want = counts * max_items / n
    take = np.maximum(np.floor(want).astype(int), 1)
    for i in np.argsort(-(want - np.floor(want)), kind="stable"):
        if take.sum() >= max_items:
            break
        if take[i] < counts[i]:
            take[i] += 1
    rng = np.random.default_rng(seed)
    out = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take,
                                                                          strict=True)]
    return np.sort(np.concatenate(out))


def robustness_table(predictor: object, data: ImageSet,
                     perturbations: list[Perturbation] | None = None, seed: int = 0,
                     max_items: int | None = None, stratified: bool = False,
                     clean_probs: np.ndarray | None = None) -> list[dict]:
    """One row per perturbation: accuracy, change against clean, share of unchanged predictions.

    With max_items, a seeded sample of the labeled images is scored: stratified by class (each
    class in its share) or uniform. `clean_probs`: the probabilities of every image of `data`
    already computed (a run's scoring pass), read for the clean row instead of another pass."""
    labels = data.labels.numpy()
    keep = np.flatnonzero(labels >= 0)
    if len(keep) == 0:
        raise DataError("robustness needs labeled images (the data has no labels)")
    keep = keep[stratified_items(labels[keep], max_items, seed) if stratified
                else sample_items(len(keep), max_items, seed)]
    images, y = data.images[torch.as_tensor(keep)], labels[keep]
    rows, clean_pred, clean_acc = [], None, None
    for p in perturbations or default_perturbations():
        if p.identity and clean_probs is not None:
            pred = np.asarray(clean_probs)[keep].argmax(1)
        else:
            pred = perturbed_probs(predictor, images, p, seed).argmax(1)
        acc = float((pred == y).mean())
        if clean_pred is None:
            clean_pred, clean_acc = pred, acc
        rows.append({"perturbation": p.name, "description": p.description, "n": int(len(y)),
                     "accuracy": acc, "change": acc - clean_acc,
                     "unchanged": float((pred == clean_pred).mean())})
    return rows
