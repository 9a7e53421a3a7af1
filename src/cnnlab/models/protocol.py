"""The transfer-learning protocol every cnnlab network implements (see models/registry.py)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError


def get_path(root: nn.Module, path: str) -> nn.Module:
    """The sub-module at a dotted path such as "fc_layer.6"."""
    mod = root
    for part in path.split("."):
        mod = mod[int(part)] if part.isdigit() else getattr(mod, part)  # type: ignore[index]
    return mod


def set_path(root: nn.Module, path: str, new: nn.Module) -> None:
    """Replace the sub-module at a dotted path."""
    parent_path, _, last = path.rpartition(".")
    parent = get_path(root, parent_path) if parent_path else root
    if last.isdigit():
        parent[int(last)] = new  # type: ignore[index]
    else:
        setattr(parent, last, new)


def new_head_like(old: nn.Module, num_classes: int) -> nn.Module:
    """A fresh layer of the same kind as `old` with `num_classes` outputs."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(old.in_channels, num_classes, old.kernel_size, old.stride,
                         old.padding, bias=old.bias is not None)
    raise CnnlabError(f"cannot replace a {type(old).__name__} head")


class TransferNet(nn.Module):
    """Mixin: `freeze_groups()`, `head()` and `reset_head(num_classes)` from two attributes.

    Subclasses set `_head_path` (dotted path of the final classifier layer) and implement
    `freeze_groups()`; `_init_head(layer)` may re-apply the model's own initialisation.
    """

    _head_path: str = "fc"

    def freeze_groups(self) -> list[nn.Module]:  # pragma: no cover - always overridden
        """Feature-extractor groups from input to output (freeze the first N)."""
        raise NotImplementedError

    def head(self) -> nn.Module:
        """The final classifier layer."""
        return get_path(self, self._head_path)

    def _init_head(self, layer: nn.Module) -> None:
        """Initialise a new head; default: PyTorch's own initialisation (already applied)."""

    def reset_head(self, num_classes: int) -> nn.Module:
        """Replace the classifier layer by a fresh one with `num_classes` outputs; returns it."""
        old = self.head()
        new = new_head_like(old, num_classes)
        self._init_head(new)
        ref = next(old.parameters(), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        set_path(self, self._head_path, new)
        self.num_classes = num_classes
        return new


def normal_init(layer: nn.Module, std: float) -> None:
    """Weights ~ N(0, std^2), biases 0 (the seeds' initialisation)."""
    with torch.no_grad():
        nn.init.normal_(layer.weight, 0.0, std)
        if getattr(layer, "bias", None) is not None:
            nn.init.constant_(layer.bias, 0.0)
