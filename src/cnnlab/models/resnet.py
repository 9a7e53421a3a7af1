"""ResNet-18/34 in plain torch.nn with torchvision's state-dict keys, so its weight files load.

Keys: conv1, bn1, layer1.0.conv1, layer1.0.bn1, ..., layer2.0.downsample.0/1, ..., fc.
The "-small" variants swap the ImageNet stem (7x7/2 conv + 3x3/2 max-pool) for a 3x3/1 conv
and no pooling, the usual choice for 32x32 images (CIFAR); keys stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.protocol import TransferNet
from cnnlab.models.registry import register

# torchvision's IMAGENET1K_V1 weight files.
WEIGHT_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
}
IMAGENET_CLASSES = 1000


class BasicBlock(nn.Module):
    """Two 3x3 convs with BatchNorm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(TransferNet):
    """ResNet with BasicBlocks (18: [2,2,2,2], 34: [3,4,6,3]); torchvision's layout and init."""

    _head_path = "fc"

    def __init__(self, layers: list[int], num_classes: int = 1000, in_channels: int = 3,
                 small_stem: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.inplanes = 64
        if small_stem:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes))
        mods = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def freeze_groups(self) -> list[nn.Module]:
        """stem (conv1 + bn1), layer1, layer2, layer3, layer4."""
        return [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3,
                self.layer4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [N, classes]."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def read_state_dict(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a weight file (weights_only); tolerates 'state_dict' and 'module.'."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CnnlabError(f"{p}: weights file not found")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure is an unreadable file
        raise CnnlabError(f"{p}: not a readable PyTorch weights file for {what} "
                          f"({str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise CnnlabError(f"{p}: expected a state dict (name -> tensor) for {what}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Load strictly; a mismatch is one line naming the file and the first bad key."""
    own = model.state_dict()
    bad_shape = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if bad_shape:
        k = bad_shape[0]
        raise CnnlabError(f"{where}: weight {k} has shape {tuple(state[k].shape)}, the model "
                          f"needs {tuple(own[k].shape)} (another architecture?)")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        example = (result.missing_keys or result.unexpected_keys)[0]
        raise CnnlabError(f"{where}: weights do not fit this model ({len(result.missing_keys)} "
                          f"missing, {len(result.unexpected_keys)} unexpected keys, e.g. "
                          f"{example})")


def with_weights(make: Callable[[int], TransferNet], state: dict[str, torch.Tensor], where: str,
                 stem_key: str, head_key: str, in_channels: int, num_classes: int
                 ) -> TransferNet:
    """`make(outputs)` loaded with pretrained `state`, the head replaced by a fresh one for
    `num_classes` when the weights' head has another size."""
    w = state.get(stem_key)
    if w is not None and w.shape[1] == 3 and in_channels == 1:
        # Grey input: sum the RGB filters of the first conv (same response to grey).
        state[stem_key] = w.sum(dim=1, keepdim=True)
    fc = state.get(head_key)
    model = make(int(fc.shape[0]) if fc is not None else IMAGENET_CLASSES)
    load_weights(model, state, where)
    if model.num_classes != num_classes:
        model.reset_head(num_classes)
    return model


def _pretrained_state(name: str, weights_file: str | None) -> tuple[dict, str]:
    if weights_file:
        return read_state_dict(weights_file, name), str(weights_file)
    url = WEIGHT_URLS[name]
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                   weights_only=True)
    except Exception as exc:  # noqa: BLE001 - offline, proxy, corrupt download: same advice
        fname = url.rsplit("/", 1)[1]
        raise CnnlabError(
            f"{name}: could not download ImageNet weights from {url} "
            f"({type(exc).__name__}); download {fname} on a machine with internet access "
            f"and pass --weights-file PATH/{fname} (or put it in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'})") from None
    return state, url


def build_resnet(name: str, layers: list[int], num_classes: int, in_channels: int,
                 small_stem: bool = False, pretrained: bool = False,
                 weights_file: str | None = None) -> ResNet:
    """A ResNet, optionally with ImageNet weights and a fresh head for `num_classes`."""
    if in_channels not in (1, 3):
        raise CnnlabError(f"{name}: needs 1- or 3-channel images, got {in_channels}")
    if not (pretrained or weights_file):
        return ResNet(layers, num_classes, in_channels, small_stem)
    if small_stem:
        raise CnnlabError(f"{name}-small has no ImageNet weights (its stem differs); use "
                          f"--model {name} with --image-size 224 for pretrained weights")
    state, where = _pretrained_state(name, weights_file)
    return with_weights(lambda out: ResNet(layers, out, in_channels), state, where,
                        "conv1.weight", "fc.weight", in_channels, num_classes)


_SIZES = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3]}


def _register(name: str) -> None:
    layers = _SIZES[name]
    depth = name.removeprefix("resnet")

    @register(name, f"ResNet-{depth} (torchvision layout; ImageNet weights with --pretrained)",
              family="pretrained", pretrained=True, default_size=224, min_size=32)
    def full(num_classes: int, in_channels: int, image_size: int, pretrained: bool = False,
             weights_file: str | None = None) -> nn.Module:
        """ResNet with the ImageNet stem."""
        return build_resnet(name, layers, num_classes, in_channels, False, pretrained,
                            weights_file)

    @register(f"{name}-small", f"ResNet-{depth} with a 3x3/1 stem and no max-pool, for 32x32",
              family="general", default_size=32, min_size=8)
    def small(num_classes: int, in_channels: int, image_size: int, pretrained: bool = False,
              weights_file: str | None = None) -> nn.Module:
        """ResNet with the small-image stem."""
        return build_resnet(name, layers, num_classes, in_channels, True, pretrained,
                            weights_file)


for _name in _SIZES:
    _register(_name)
