"""Batched inference over uint8 image tensors."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.batches import batch_slices, to_float


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 256,
                   device: torch.device | str = "cpu", channels_last: bool = False,
                   autocast_ctx=None) -> torch.Tensor:  # noqa: ANN001
    """Logits (float32, CPU) for uint8 [N,C,H,W] images, in order."""
    was_training = model.training
    model.eval()
    out = []
    try:
        for sl in batch_slices(images.shape[0], batch_size):
            x = to_float(images[sl], device, channels_last)
            with autocast_ctx() if autocast_ctx is not None else contextlib.nullcontext():
                logits = model(x)
            out.append(logits.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor,
                    weight: torch.Tensor | None = None) -> tuple[np.ndarray, float | None]:
    """(probabilities, mean cross-entropy over labeled items) from logits."""
    probs = F.softmax(logits, dim=1).numpy() if logits.numel() else np.zeros((0, 0))
    mask = labels >= 0
    loss = float(F.cross_entropy(logits[mask], labels[mask], weight=weight)) \
        if mask.any() else None
    return probs, loss


@torch.no_grad()
def fold_batchnorm(model: nn.Module, probe: torch.Tensor, tol: float = 1e-4
                   ) -> tuple[nn.Module, int]:
    """An inference copy of `model` with every eval-mode BatchNorm2d that directly follows a
    Conv2d folded into that conv's weight and bias: one pass over memory instead of two for
    each (EfficientNet-Lite0 has 49 of them; on a CPU those passes, not the arithmetic, bound
    a frozen backbone's feature pass). Pairs are found by one probe forward (a BatchNorm whose
    input is the tensor a Conv2d just returned, used by nothing else before it). The copy is
    checked on `probe` against the original in float32; on any disagreement beyond `tol`
    (relative) the original is returned, with 0 folded."""
    import copy

    work = copy.deepcopy(model).eval()
    order: list[tuple[nn.Module, int, int]] = []  # (module, id(input), id(output))
    keep: list[torch.Tensor] = []  # every output stays alive, so no id is reused in the probe

    def hook(mod: nn.Module, inp: tuple, out: object) -> None:
        if isinstance(out, torch.Tensor) and inp and isinstance(inp[0], torch.Tensor):
            order.append((mod, id(inp[0]), id(out)))
            keep.append(out)

    hooks = [m.register_forward_hook(hook) for m in work.modules()
             if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        ref = work(probe).float()
    finally:
        for h in hooks:
            h.remove()
    pairs = []
    seen_bn: set[int] = set()
    for (a, _, a_out), (b, b_in, _) in zip(order, order[1:], strict=False):
        if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d) and b_in == a_out and \
                id(b) not in seen_bn and b.track_running_stats and b.running_var is not None:
            pairs.append((a, b))
            seen_bn.add(id(b))
    if not pairs or len({id(a) for a, _ in pairs}) != len(pairs):
        return model, 0
    parents = {id(child): (parent, name) for parent in work.modules()
               for name, child in parent.named_children()}
    for conv, bn in pairs:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
            1.0 / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
        conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
        parent, name = parents[id(bn)]
        setattr(parent, name, nn.Identity())
    keep.clear()
    got = work(probe).float()
    if not torch.allclose(got, ref, rtol=tol, atol=tol * float(ref.abs().max().clamp_min(1))):
        return model, 0
    return work, len(pairs)
