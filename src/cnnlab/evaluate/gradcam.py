"""Grad-CAM (captum's LayerGradCam): where a conv model looks when it scores a class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cnnlab.data.batches import batch_slices, to_float
from cnnlab.errors import CnnlabError


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every 2-D convolution, in the order the model registers them."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def has_conv(model: nn.Module) -> bool:
    """True when the model has a convolution layer Grad-CAM can attach to."""
    return bool(conv_layers(model))


def resolve_layer(model: nn.Module, name: str | None = None,
                  sample: torch.Tensor | None = None) -> tuple[str, nn.Module]:
    """The layer to explain: `name` (a module name, with or without "net."), else the last
    convolutional block; with a `sample` batch the choice skips 1x1 maps (see default_layer)."""
    convs = conv_layers(model)
    if name is None:
        if not convs:
            raise CnnlabError("Grad-CAM needs a convolutional model; this one has no Conv2d "
                              "layer (an MLP?)")
        if sample is not None:
            return default_layer(model, sample)
        return _block_of(model, *convs[-1])
    modules = dict(model.named_modules())
    for candidate in (name, f"net.{name}"):
        if candidate and candidate in modules:
            return candidate, modules[candidate]
    names = [n for n, _ in convs][-8:]
    hint = f"; conv layers include {', '.join(names)}" if names else ""
    raise CnnlabError(f"--layer {name!r}: no such module in the model{hint}")


_BLOCK_TAIL = (nn.BatchNorm2d, nn.GroupNorm, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU,
               nn.ELU, nn.Hardswish, nn.Identity)


def _block_of(model: nn.Module, name: str, conv: nn.Module) -> tuple[str, nn.Module]:
    """The conv's Conv-Norm-Act block when it is one, else the conv itself.

    Grad-CAM is defined on the rectified activations of the last conv layer; the raw conv
    output (before BatchNorm and ReLU) has negative parts that blur the map.
    """
    if "." not in name:
        return name, conv
    parent_name = name.rsplit(".", 1)[0]
    parent = dict(model.named_modules()).get(parent_name)
    if isinstance(parent, nn.Sequential) and len(parent) > 1 and parent[0] is conv and \
            all(isinstance(m, _BLOCK_TAIL) for m in list(parent)[1:]):
        return parent_name, parent
    return name, conv


def default_layer(model: nn.Module, sample: torch.Tensor) -> tuple[str, nn.Module]:
    """The last conv with a spatial map (> 1x1), widened to the enclosing block that ends it.

    One probe forward records output shapes. A conv whose map is 1x1 (a classifier conv
    after global pooling, as in the CS 475 conv net) cannot say where. Going one level up
    picks e.g. a ResNet's last BasicBlock (after the residual add and ReLU) or a Conv-BN-ReLU
    Sequential instead of the raw conv, so the map uses rectified activations.
    """
    shapes: dict[str, tuple | None] = {}

    def record(name: str):  # noqa: ANN202
        def hook(mod, inp, out):  # noqa: ANN001, ANN202, ARG001
            shapes[name] = tuple(out.shape) if isinstance(out, torch.Tensor) else None
        return hook

    modules = dict(model.named_modules())
    hooks = [m.register_forward_hook(record(n)) for n, m in modules.items() if n]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(sample[:1])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    convs = [n for n, _ in conv_layers(model)]
    spatial = [n for n in convs if shapes.get(n) and len(shapes[n]) == 4
               and shapes[n][2] * shapes[n][3] > 1]
    if not spatial:
        return _block_of(model, convs[-1], modules[convs[-1]])
    conv = spatial[-1]
    if "." in conv:
        parent = conv.rsplit(".", 1)[0]
        inner = [n for n in convs if n.startswith(parent + ".")]
        # One level up, when the block ends with this conv and keeps its output shape (an
        # outer container would give the same tensor under a vaguer name).
        if inner[-1] == conv and shapes.get(parent) == shapes[conv]:
            return parent, modules[parent]
    return conv, modules[conv]


@dataclass
class CamResult:
    """Grad-CAM maps [N,H,W] in [0,1] (per image, max = 1), with what was explained."""

    cams: np.ndarray
    targets: np.ndarray
    preds: np.ndarray
    probs: np.ndarray
    layer: str


def gradcam(model: nn.Module, images: torch.Tensor, targets: np.ndarray | None = None,
            layer: str | None = None, device: torch.device | str = "cpu",
            batch_size: int = 32) -> CamResult:
    """Grad-CAM of uint8 [N,C,H,W] images for `targets` (default: the predicted classes)."""
    from captum.attr import LayerAttribution, LayerGradCam

    sample = to_float(images[:1], device) if layer is None and len(images) else None
    name, module = resolve_layer(model, layer, sample)
    was_training = model.training
    model.eval()
    h, w = images.shape[-2:]
    cams, preds, probs_all, tgts = [], [], [], []
    try:
        for sl in batch_slices(images.shape[0], batch_size):
            x = to_float(images[sl], device).requires_grad_(True)
            with torch.no_grad():
                probs = torch.softmax(model(x).float(), 1).cpu()
            pred = probs.argmax(1)
            tgt = pred if targets is None else torch.as_tensor(np.asarray(targets)[sl],
                                                               dtype=torch.long)
            cam = LayerGradCam(model, module).attribute(x, target=tgt.to(x.device),
                                                        relu_attributions=True)
            if cam.ndim != 4:
                raise CnnlabError(f"--layer {name!r}: Grad-CAM needs a layer with a spatial "
                                  f"output [N,C,H,W], got {tuple(cam.shape)}")
            cam = cam.detach().float().sum(1, keepdim=True)
            cam = LayerAttribution.interpolate(cam, (h, w), "bilinear")[:, 0].cpu()
            cams.append(cam)
            preds.append(pred)
            probs_all.append(probs)
            tgts.append(tgt.cpu())
    finally:
        model.train(was_training)
    cam = torch.cat(cams).clamp_min(0)
    # Per-image scale: the map says where, not how strongly compared with other images.
    peak = cam.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    cam = torch.where(peak > 1e-12, cam / peak, torch.zeros_like(cam))
    return CamResult(cam.numpy(), torch.cat(tgts).numpy(), torch.cat(preds).numpy(),
                     torch.cat(probs_all).numpy(), name)


def pick_items(labels: np.ndarray, n: int, seed: int = 0, cls: int | None = None) -> np.ndarray:
    """Up to n indices spread over the classes (round robin, seeded), or only class `cls`."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    if cls is not None:
        idx = np.flatnonzero(labels == cls)
        return np.sort(rng.permutation(idx)[:n]) if len(idx) else idx
    if not (labels >= 0).any():
        return np.sort(rng.permutation(len(labels))[:n])
    groups = [rng.permutation(np.flatnonzero(labels == c)).tolist()
              for c in np.unique(labels[labels >= 0])]
    out: list[int] = []
    while len(out) < n and any(groups):
        for g in groups:
            if g and len(out) < n:
                out.append(g.pop(0))
    return np.asarray(out, dtype=np.int64)


def class_index(classes: list[str], name: str | None) -> int | None:
    """Index of class `name` (None passes through); a one-line error for an unknown name."""
    if name is None:
        return None
    if name in classes:
        return classes.index(name)
    raise CnnlabError(f"--class {name!r}: not one of the model's classes "
                      f"({', '.join(classes[:12])}{', ...' if len(classes) > 12 else ''})")
