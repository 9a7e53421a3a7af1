"""A network with its input normalization and class names: what a checkpoint rebuilds."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.errors import CnnlabError


class Classifier(nn.Module):
    """Takes float images in [0, 1], normalizes with the training statistics, returns logits."""

    def __init__(self, net: nn.Module, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of [0, 1] images."""
        return self.net((x - self.mean) / self.std)


def check_output(net: nn.Module, name: str, num_classes: int, in_channels: int,
                 image_size: int) -> None:
    """Refuse a network whose output for one image is not `num_classes` logits, before it
    trains (a wrong head would fail mid-run with a loss-function error, leaving no metrics)."""
    was_training = net.training
    x = torch.zeros(1, in_channels, image_size, image_size)
    try:
        net.eval()  # BatchNorm refuses a batch of one in training mode
        with torch.no_grad():
            out = net(x)
    except Exception as exc:  # noqa: BLE001 - the builder's own code: any error is possible
        detail = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CnnlabError(f"model {name!r} fails on one {in_channels}x{image_size}x"
                          f"{image_size} image ({type(exc).__name__}: {detail})") from None
    finally:
        net.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise CnnlabError(f"model {name!r} returns a {type(out).__name__}, not a tensor; its "
                          f"forward must return the {num_classes} logits per image")
    if tuple(out.shape) != (1, num_classes):
        raise CnnlabError(f"model {name!r} returns shape {tuple(out.shape)} for {num_classes} "
                          f"classes; its last layer must output {num_classes} values per image")
