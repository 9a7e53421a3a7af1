"""Small general-purpose models: a compact CNN and an MLP."""

from __future__ import annotations

import math

from torch import nn

from cnnlab.models.registry import register


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    """Conv-BN-ReLU stages with max-pooling, global average pooling and a linear head."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 width: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        # Pool only while the map stays at least 2 pixels wide, so 8x8 digits work too.
        pools = max(0, min(3, int(math.log2(max(image_size, 1))) - 1))
        widths = [width, width * 2, width * 4]
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers += [_block(cin, w), _block(w, w)]
            if i < pools:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(cin, num_classes))

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.head(self.features(x))


class MLP(nn.Module):
    """Flatten, then fully connected layers with ReLU."""

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 hidden: int = 256, layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        dims = [in_channels * image_size * image_size] + [hidden] * layers
        mods: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            mods += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            if dropout:
                mods.append(nn.Dropout(dropout))
        mods.append(nn.Linear(dims[-1], num_classes))
        self.net = nn.Sequential(*mods)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.net(x)


@register("cnn", "compact Conv-BN-ReLU network for small images (the default)", min_size=4,
          default_size=64)
def small_cnn(num_classes: int, in_channels: int, image_size: int, **kw: object) -> nn.Module:
    """The default model."""
    return SmallCNN(num_classes, in_channels, image_size, **kw)


@register("mlp", "multi-layer perceptron on flattened pixels", default_size=32)
def mlp(num_classes: int, in_channels: int, image_size: int, **kw: object) -> nn.Module:
    """A plain MLP baseline."""
    return MLP(num_classes, in_channels, image_size, **kw)
