"""The networks of the course seeds, layer for layer and with their own initialisation.

Each class keeps the seed's attribute names, so state-dict keys read like the seed's code.
Every network implements the transfer protocol of models/registry.py
(`freeze_groups()`, `head()`, `reset_head(num_classes)`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.protocol import TransferNet, normal_init
from cnnlab.models.registry import register


def _flat_size(channels: int, image_size: int) -> int:
    return channels * image_size * image_size


# --------------------------------------------------------------------------- EECS 553 HW6


class EECS553CNN(TransferNet):
    """EECS 553 HW6 Appendix A: 4 conv 5x5/2 pad 2 (16/32/64/128), FC 64, FC classes.

    Init: conv weights N(0, 2/(5·5·C_in)), FC1 N(0, 1/256), FC2 N(0, 1/32), biases 0.
    32x32 input: 303,397 parameters for 5 classes.
    """

    _head_path = "fc2"

    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, 5, stride=2, padding=2)
        self.conv2 = nn.Conv2d(16, 32, 5, stride=2, padding=2)
        self.conv3 = nn.Conv2d(32, 64, 5, stride=2, padding=2)
        self.conv4 = nn.Conv2d(64, 128, 5, stride=2, padding=2)
        self.fc1 = nn.Linear(128 * 2 * 2, 64)
        self.fc2 = nn.Linear(64, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        """The Appendix A initialisation."""
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            normal_init(conv, math.sqrt(2.0 / (5 * 5 * conv.in_channels)))
        normal_init(self.fc1, math.sqrt(1.0 / 256))
        self._init_head(self.fc2)

    def _init_head(self, layer: nn.Module) -> None:
        normal_init(layer, math.sqrt(1.0 / 32))

    def freeze_groups(self) -> list[nn.Module]:
        """conv1..conv4."""
        return [self.conv1, self.conv2, self.conv3, self.conv4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes] for [N, C, 32, 32] input."""
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


@register("eecs553-cnn", "EECS 553 HW6 Appendix A CNN: 4x conv5x5/2 16-32-64-128, FC 64",
          family="seed", fixed_size=32, default_size=32)
def eecs553_cnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """EECS 553 HW6 Appendix A CNN."""
    return EECS553CNN(num_classes, in_channels)


# --------------------------------------------------------------------------- EECS 445 P2


class EECS445CNN(TransferNet):
    """EECS 445 Project 2 Target/Source CNN: conv 16/64/8 5x5/2 pad 2, max-pool 2, FC 32->classes.

    Init as the seed's code: conv weights N(0, 1/(5·5·C_in)) (std 1/sqrt(5·5·C_in)),
    FC N(0, 1/32), biases 0. 64x64 input; 39,754 parameters for the 2-class target.
    `conv3_filters` (default 8) is what 2(f)iii varies (8 vs 64); the FC input follows it.
    The seed also calls torch.manual_seed(42) inside init_weights; we do not reseed the global
    generator (the trainer's --seed decides), so the distribution is the same, not the draw.
    """

    def __init__(self, num_classes: int = 2, in_channels: int = 3, fc_name: str = "fc_1",
                 conv3_filters: int = 8) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._head_path = fc_name  # target.py names it fc_1, source.py fc1
        self.conv1 = nn.Conv2d(in_channels, 16, 5, 2, 2)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv2 = nn.Conv2d(16, 64, 5, 2, 2)
        self.conv3 = nn.Conv2d(64, conv3_filters, 5, 2, 2)
        # conv3's output is 2x2 for the 64x64 input: the FC takes 4 values per filter.
        setattr(self, fc_name, nn.Linear(conv3_filters * 2 * 2, num_classes))
        self.init_weights()

    def init_weights(self) -> None:
        """The seed's init_weights (without the global reseed)."""
        for conv in (self.conv1, self.conv2, self.conv3):
            normal_init(conv, 1.0 / math.sqrt(5 * 5 * conv.in_channels))
        self._init_head(self.head())

    def _init_head(self, layer: nn.Module) -> None:
        normal_init(layer, 1.0 / math.sqrt(layer.in_features))

    def freeze_groups(self) -> list[nn.Module]:
        """conv1..conv3 (the seed's freeze_layers order)."""
        return [self.conv1, self.conv2, self.conv3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes] for [N, C, 64, 64] input."""
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = F.relu(self.conv3(x))
        return self.head()(x.flatten(1))


def _positive_int(model: str, name: str, value: object) -> int:
    try:
        n = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or n != value and str(n) != str(value).strip():
        raise CnnlabError(f"{model}: {name} must be a whole number of at least 1, got {value!r}")
    return n


@register("eecs445-target", "EECS 445 Project 2 target CNN: conv 16-64-8 5x5/2, pool 2, FC 32 "
          "(--model-arg conv3_filters=64)", family="seed", fixed_size=64, default_size=64)
def eecs445_target(num_classes: int, in_channels: int, image_size: int,
                   conv3_filters: int = 8) -> nn.Module:
    """EECS 445 Project 2 Target (2 classes in the seed)."""
    return EECS445CNN(num_classes, in_channels, "fc_1",
                      _positive_int("eecs445-target", "conv3_filters", conv3_filters))


@register("eecs445-source", "EECS 445 Project 2 source CNN (the 8-class twin of the target; "
          "--model-arg conv3_filters=64)", family="seed", fixed_size=64, default_size=64)
def eecs445_source(num_classes: int, in_channels: int, image_size: int,
                   conv3_filters: int = 8) -> nn.Module:
    """EECS 445 Project 2 Source (8 classes in the seed)."""
    return EECS445CNN(num_classes, in_channels, "fc1",
                      _positive_int("eecs445-source", "conv3_filters", conv3_filters))


# --------------------------------------------------------------------------- COMP 6721


class MultiLayerFCNet(TransferNet):
    """COMP 6721 A8 Q1: four fully connected layers, hidden width H, ReLU.

    Returns logits. The seed ends with F.log_softmax and then uses CrossEntropyLoss, which
    applies log-softmax again (softmax twice); the argmax is the same but the loss is not
    the intended one, so the network here outputs plain logits.
    """

    _head_path = "linear4"

    def __init__(self, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.num_classes = d_out
        self.linear1 = nn.Linear(d_in, hidden)
        self.linear2 = nn.Linear(hidden, hidden)
        self.linear3 = nn.Linear(hidden, hidden)
        self.linear4 = nn.Linear(hidden, d_out)

    def freeze_groups(self) -> list[nn.Module]:
        """linear1..linear3."""
        return [self.linear1, self.linear2, self.linear3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images (flattened here, as the seed's reshape(-1, 32*32*3))."""
        x = x.flatten(1)
        x = F.relu(self.linear1(x))
        x = F.relu(self.linear2(x))
        x = F.relu(self.linear3(x))
        return self.linear4(x)


@register("comp6721-mlp", "COMP 6721 four-layer fully connected net (hidden H, "
          "--model-arg hidden=H)", family="seed", default_size=32)
def comp6721_mlp(num_classes: int, in_channels: int, image_size: int,
                 hidden: int = 100) -> nn.Module:
    """COMP 6721 MultiLayerFCNet; D_in = C·H·W (3·32·32 = 3072 on CIFAR-10)."""
    return MultiLayerFCNet(_flat_size(in_channels, image_size),
                           _positive_int("comp6721-mlp", "hidden", hidden), num_classes)


class COMP6721CNN(TransferNet):
    """COMP 6721 A9 Q3 CNN: 4 conv3x3 (32,32,64,64) + BatchNorm + LeakyReLU, two max-pools,
    dropout 0.1, FC 8·8·64 -> 1000 -> 512 -> classes. 32x32 input. PyTorch default init."""

    _head_path = "fc_layer.6"

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv_layer = nn.Sequential(
            nn.Conv2d(in_channels=in_channels, out_channels=32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(in_channels=32, out_channels=32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.LeakyReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
            nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(inplace=True),
            nn.Conv2d(in_channels=64, out_channels=64, kernel_size=3, padding=1),
            nn.BatchNorm2d(64),
            nn.LeakyReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2),
        )
        self.fc_layer = nn.Sequential(
            nn.Dropout(p=0.1),
            nn.Linear(8 * 8 * 64, 1000),
            nn.ReLU(inplace=True),
            nn.Linear(1000, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.1),
            nn.Linear(512, num_classes),
        )

    def freeze_groups(self) -> list[nn.Module]:
        """Each conv layer with its BatchNorm and activation (the pool rides with 2 and 4)."""
        c = self.conv_layer
        return [c[0:3], c[3:7], c[7:10], c[10:14]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes] for [N, C, 32, 32] input."""
        x = self.conv_layer(x)
        x = x.reshape(x.size(0), -1)  # the seed's view(); reshape also takes channels_last
        return self.fc_layer(x)


@register("comp6721-cnn", "COMP 6721 CNN: 4x conv3x3 BN LeakyReLU, FC 1000-512, dropout 0.1",
          family="seed", fixed_size=32, default_size=32)
def comp6721_cnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """COMP 6721 BatchNorm + LeakyReLU CNN."""
    return COMP6721CNN(num_classes, in_channels)


# --------------------------------------------------------------------------- CS 475 HW3


class TwoLayerDenseNet(TransferNet):
    """CS 475 HW3 1.5: Linear(784 -> 100), ReLU, Linear(100 -> classes). PyTorch default init."""

    _head_path = "net.2"

    def __init__(self, d_in: int, num_classes: int, hidden_layer_width: int = 100) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(nn.Linear(d_in, hidden_layer_width), nn.ReLU(),
                                 nn.Linear(hidden_layer_width, num_classes))

    def freeze_groups(self) -> list[nn.Module]:
        """The hidden layer."""
        return [self.net[0]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images, flattened to vectors as the homework does."""
        return self.net(x.flatten(1))


@register("cs475-densenet", "CS 475 HW3 TwoLayerDenseNet: 784 -> 100 -> classes "
          "(--model-arg hidden_layer_width=H, or hidden=H)", family="seed", default_size=28)
def cs475_densenet(num_classes: int, in_channels: int, image_size: int,
                   hidden_layer_width: int = 100, hidden: int | None = None) -> nn.Module:
    """CS 475 TwoLayerDenseNet; D_in = C·H·W (784 for 28x28 grey); `hidden` as in comp6721-mlp."""
    width = hidden if hidden is not None else hidden_layer_width
    return TwoLayerDenseNet(_flat_size(in_channels, image_size), num_classes,
                            _positive_int("cs475-densenet", "hidden_layer_width", width))


class TooSimpleConvNN(TransferNet):
    """CS 475 HW3 1.6: reshape to images, two convs, spatial average, 1x1 conv to classes.

    The seed's Figure 2 (channel counts, kernel size) is not in the text we have; we use
    conv 3x3 -> 8, ReLU, conv 3x3 -> 16, ReLU (both unpadded), mean over H and W, then a 1x1
    conv to the class channels. `channels=8,16` and `kernel=3` are builder arguments.
    """

    _head_path = "final_conv"

    def __init__(self, num_classes: int, in_channels: int, image_size: int,
                 channels: tuple[int, int] = (8, 16), kernel: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels, self.image_size = in_channels, image_size
        c1, c2 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, kernel)
        self.conv2 = nn.Conv2d(c1, c2, kernel)
        self.final_conv = nn.Conv2d(c2, num_classes, 1)

    def freeze_groups(self) -> list[nn.Module]:
        """conv1, conv2."""
        return [self.conv1, self.conv2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W] (or flattened [N, C·H·W]) -> logits [N, classes]."""
        x = x.reshape(-1, self.in_channels, self.image_size, self.image_size)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = x.mean(dim=(2, 3), keepdim=True)  # each channel averaged to one "pixel"
        return self.final_conv(x).flatten(1)


@register("cs475-convnet", "CS 475 HW3 TooSimpleConvNN: 2 convs, spatial mean, 1x1 conv "
          "(--model-arg channels=8,16 kernel=3)", family="seed", default_size=28, min_size=5)
def cs475_convnet(num_classes: int, in_channels: int, image_size: int,
                  channels: str | tuple = "8,16", kernel: int = 3) -> nn.Module:
    """CS 475 TooSimpleConvNN."""
    if isinstance(channels, str):
        try:
            chans = tuple(int(c) for c in channels.split(","))
        except ValueError:
            chans = ()
    else:
        chans = tuple(int(c) for c in channels)  # type: ignore[union-attr]
    if len(chans) != 2 or min(chans) < 1:
        raise CnnlabError(f"cs475-convnet: channels must be two numbers like 8,16, got {channels}")
    if image_size < 2 * (int(kernel) - 1) + 1:
        raise CnnlabError(f"cs475-convnet needs images of at least {2 * (int(kernel) - 1) + 1}"
                          f"x{2 * (int(kernel) - 1) + 1}, the data is {image_size}x{image_size}")
    return TooSimpleConvNN(num_classes, in_channels, image_size, chans, int(kernel))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- USI A2


class MyNet(TransferNet):
    """USI A2 myNet: conv3x3 16/32/64 (pad 1) each + max-pool 2, FC 1024 -> 500 -> classes.

    The student's improvement steps are switches: `dropout` (0.5 after the last pool and
    after FC1, step b), `bias=False` (every layer, step d) and `batchnorm` (after each conv's
    ReLU, before pooling, step e). The seed's extra ReLU after the third pool is kept: with
    BatchNorm it clips negatives, without it is a no-op. 32x32 input. PyTorch default init.
    """

    _head_path = "fc2"

    def __init__(self, num_classes: int = 10, in_channels: int = 3, bias: bool = True,
                 dropout: float = 0.0, batchnorm: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(16, 32, 3, 1, padding=1, bias=bias)
        self.conv3 = nn.Conv2d(32, 64, 3, 1, padding=1, bias=bias)
        self.pool1 = nn.MaxPool2d(kernel_size=(2, 2), stride=2)
        if batchnorm:
            self.bn1, self.bn2, self.bn3 = nn.BatchNorm2d(16), nn.BatchNorm2d(32), \
                nn.BatchNorm2d(64)
        else:
            self.bn1 = self.bn2 = self.bn3 = nn.Identity()
        self.drop1 = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc1 = nn.Linear(4 * 4 * 64, 500, bias=bias)
        self.fc2 = nn.Linear(500, num_classes, bias=bias)

    def freeze_groups(self) -> list[nn.Module]:
        """Each conv with its BatchNorm (when present)."""
        return [nn.ModuleList([c, b]) for c, b in ((self.conv1, self.bn1), (self.conv2, self.bn2),
                                                   (self.conv3, self.bn3))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes] for [N, C, 32, 32] input."""
        x = self.pool1(self.bn1(F.relu(self.conv1(x))))
        x = self.pool1(self.bn2(F.relu(self.conv2(x))))
        x = F.relu(self.pool1(self.bn3(F.relu(self.conv3(x)))))
        x = self.drop1(x)
        x = x.reshape(-1, 4 * 4 * 64)  # the seed's view(); reshape also takes channels_last
        x = self.drop1(F.relu(self.fc1(x)))
        return self.fc2(x)


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
        return value.lower() in ("true", "yes", "1")
    raise CnnlabError(f"usi-mynet: {name} must be true or false, got {value!r}")


@register("usi-mynet", "USI A2 myNet: conv3x3 16-32-64 + pools, FC 500 "
          "(--model-arg bias=false/dropout=true/batchnorm=true)",
          family="seed", fixed_size=32, default_size=32)
def usi_mynet(num_classes: int, in_channels: int, image_size: int, bias: object = True,
              dropout: object = False, batchnorm: object = False) -> nn.Module:
    """USI A2 myNet with the student's switches; dropout=true means p=0.5, or give p."""
    if isinstance(dropout, float) and not isinstance(dropout, bool) and 0 < dropout < 1:
        p = dropout
    else:
        p = 0.5 if _as_bool("dropout", dropout) else 0.0
    return MyNet(num_classes, in_channels, _as_bool("bias", bias), p,
                 _as_bool("batchnorm", batchnorm))
