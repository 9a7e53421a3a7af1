"""Figures of the explanations: failure galleries, Grad-CAM grids, robustness examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import CnnlabError, DataError
from cnnlab.evaluate.failures import Failures
from cnnlab.evaluate.gradcam import CamResult, class_index, gradcam, pick_items
from cnnlab.evaluate.robustness import EXAMPLE_ROWS, default_perturbations, perturb
from cnnlab.report.gallery import Tile, image_grid, short


def failures_figure(f: Failures, data: ImageSet, classes: list[str], out: str | Path,
                    title: str = "Failure modes") -> Path:
    """PNG: a row block of correct items, one of wrong items, one of top-loss items."""

    def tiles(idx: np.ndarray, with_loss: bool = False) -> list[Tile]:
        out = []
        for i in idx:
            t, p = int(f.labels[i]), int(f.preds[i])
            # One short line each, so captions fit under a one-inch tile (see fit_captions).
            cap = f"{short(classes[t], 13)} {f.probs[i, t]:.2f}" if t == p else \
                f"true {short(classes[t], 9)} {f.probs[i, t]:.2f}\n" \
                f"pred {short(classes[p], 9)} {f.probs[i, p]:.2f}"
            if with_loss:
                cap += f"\nloss {f.losses[i]:.2f}"
            out.append(Tile(data.images[int(i)].numpy(), cap, t == p))
        return out

    rows = [(f"correct ({len(f.correct)})", tiles(f.correct)),
            (f"wrong ({len(f.wrong)})", tiles(f.wrong)),
            ("highest loss", tiles(f.top_loss, True))]
    return image_grid(rows, Path(out), title, max_cols=10,
                      note="captions: class and probability (if wrong: true, then predicted); "
                           "green = correct, red = wrong")


def gradcam_figure(predictor: object, data: ImageSet, out: str | Path, n: int = 8,
                   cls: str | None = None, layer: str | None = None, seed: int = 0,
                   title: str | None = None) -> tuple[Path, CamResult, np.ndarray]:
    """Grad-CAM grid PNG of n items (original next to overlay, true and predicted labels)."""

    classes = predictor.classes
    ci = class_index(classes, cls)
    labels = data.labels.numpy()
    has_labels = bool((labels >= 0).any())
    idx = pick_items(labels, n, seed, ci if has_labels else None)
    if len(idx) == 0:
        raise CnnlabError(f"no images of class {cls!r} in the data to explain")
    images = data.images[torch.as_tensor(idx)]
    if images.shape[1:] != (predictor.channels, predictor.image_size, predictor.image_size):
        from cnnlab.data.sources.common import adjust

        images = adjust(images.numpy(), (predictor.image_size, predictor.image_size),
                        predictor.channels)
    targets = None if ci is None else np.full(len(idx), ci)
    res = gradcam(predictor.module, images, targets, layer, predictor.device)
    pairs = []
    for j, i in enumerate(idx):
        t = int(labels[i])
        p = int(res.preds[j])
        ok = None if t < 0 else t == p
        head = f"true {short(classes[t], 10)}\n" if t >= 0 else ""
        cap = f"{head}pred {short(classes[p], 10)} {res.probs[j, p]:.2f}"
        img = images[j].numpy()
        target = short(classes[int(res.targets[j])], 12)
        pairs += [Tile(img, cap, ok), Tile(img, f"Grad-CAM of\n{target}", None, res.cams[j])]
    cols = 8 if len(pairs) > 8 else len(pairs)
    rows = [("", pairs[i:i + cols]) for i in range(0, len(pairs), cols)]
    what = f"class {cls}" if cls else "the predicted class"
    path = image_grid(rows, Path(out), title or f"Grad-CAM ({res.layer}) for {what}",
                      max_cols=cols, heat_label="Grad-CAM (relative)",
                      note="image, then its Grad-CAM overlay; green = correct, red = wrong")
    return path, res, idx


def examples_figure(predictor: object, data: ImageSet, out: str | Path, n: int = 10,
                    seed: int = 0, rows: tuple[str, ...] = EXAMPLE_ROWS,
                    title: str = "Perturbed examples", probs: np.ndarray | None = None) -> Path:
    """PNG: n correctly classified items (CS 475 1.8.5) under each perturbation, predicted."""

    classes = predictor.classes
    labels = data.labels.numpy()
    if probs is None:
        probs = predictor.probabilities(data.images).numpy()
    ok = np.flatnonzero((labels >= 0) & (probs.argmax(1) == labels))
    pick = np.sort(np.random.default_rng(seed).permutation(ok)[:n])
    if len(pick) == 0:
        raise DataError("no correctly classified images to perturb")
    images = data.images[torch.as_tensor(pick)]
    by_name = {p.name: p for p in default_perturbations()}
    blocks = []
    rng = np.random.default_rng(seed)
    for name in rows:
        # The images as the robustness table scores them (clipped, 8-bit, the predictor's views)
        x = perturb(images, by_name[name], rng)
        pr = probs[pick] if by_name[name].identity else predictor.probabilities(x).numpy()
        shown = x.numpy() / 255.0
        tiles = [Tile(shown[j], f"pred {short(classes[int(pr[j].argmax())])}"
                                f" ({pr[j].max():.2f})", int(pr[j].argmax()) == int(labels[i]))
                 for j, i in enumerate(pick)]
        label = "noise range/10" if name == "noise 0.1" else name
        blocks.append((label, tiles))
    return image_grid(blocks, Path(out), title, max_cols=max(len(pick), 1),
                      note="each column: one correctly classified image; green = still correct, "
                           "red = now wrong")
