"""RandAugment, TrivialAugmentWide (ours, per image; kornia's, per batch), AutoAugment and random
erasing as --augment ops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnlab.data.augment import build_augment, parse_spec
from cnnlab.errors import CnnlabError

POLICIES = ["randaugment", "randaugment=3:15", "trivialaugment", "autoaugment", "erasing=1",
            "kornia_randaugment=2:9", "kornia_trivialaugment"]


def _batch(c: int, b: int = 16, size: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.rand(b, c, size, size, generator=g)


@pytest.mark.parametrize("spec", POLICIES)
@pytest.mark.parametrize("channels", [1, 3])
def test_policy_changes_the_batch_and_keeps_shape_and_range(spec: str, channels: int) -> None:
    x = _batch(channels)
    changed = False
    for seed in range(4):  # a policy may draw identity-like ops on one batch; not on four
        torch.manual_seed(seed)
        y = build_augment(spec)(x.clone())
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        changed |= not torch.allclose(y, x, atol=1e-3)
    assert changed, f"{spec} never changed the batch"


@pytest.mark.parametrize("spec", POLICIES)
def test_policy_is_deterministic_under_a_seed(spec: str) -> None:
    x = _batch(3)
    full = f"hflip,{spec},crop=2"  # composes with our own ops
    torch.manual_seed(7)
    a = build_augment(full)(x.clone())
    torch.manual_seed(7)
    b = build_augment(full)(x.clone())
    assert torch.equal(a, b)


def test_erasing_zeroes_one_box_per_chosen_image() -> None:
    x = _batch(3, b=64) * 0.5 + 0.25  # no zero pixels before erasing
    torch.manual_seed(0)
    y = build_augment("erasing=0.5")(x)
    zero = (y == 0).all(1)  # [B,H,W] erased pixels (every channel)
    hit = zero.flatten(1).any(1)
    assert 10 < int(hit.sum()) < 54  # about half of the images
    for i in torch.nonzero(hit).flatten().tolist():
        rows, cols = torch.nonzero(zero[i], as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(box) == len(rows), "the erased pixels form one rectangle"
        assert 0.02 * 24 * 24 * 0.5 <= len(rows) <= 0.34 * 24 * 24
    assert torch.equal(y[~hit], x[~hit])
    assert torch.equal(build_augment("erasing=0")(x), x)


def test_randaugment_values_and_errors() -> None:
    assert parse_spec("randaugment=2:9,erasing") == [("randaugment", (2, 9)), ("erasing", None)]
    assert parse_spec("randaugment=12") == [("randaugment", 12.0)]
    with pytest.raises(CnnlabError, match="M must be a whole number from 0 to 30"):
        parse_spec("randaugment=2:40")
    with pytest.raises(CnnlabError, match="not N:M"):
        parse_spec("randaugment=9:x")
    with pytest.raises(CnnlabError, match="from 0 to 30"):
        parse_spec("randaugment=31")


# ---- our per-image policies (data/policies.py) against PIL, their reference definitions ----
def _pil_case(op: str, level: int, sign: float, rgb: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ours, PIL's) uint8 results of one op at one magnitude on a smooth test image."""
    from PIL import Image, ImageEnhance, ImageOps

    from cnnlab.data.policies import OPS as P_OPS
    from cnnlab.data.policies import apply_ops

    g = np.random.default_rng(3)
    base = np.clip(np.linspace(30, 220, 20 * 20).reshape(20, 20, 1)
                   + g.normal(0, 20, (20, 20, 3 if rgb else 1)), 0, 255).astype(np.uint8)
    img = Image.fromarray(base if rgb else base[..., 0])
    x = torch.from_numpy(base).permute(2, 0, 1)[None].float() / 255
    y = apply_ops(x, torch.tensor([P_OPS.index(op)]), torch.tensor([level]), wide=True,
                  sign=torch.tensor([sign]))
    ours = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    f = 1 + sign * level / 30 * 0.99
    ref = {"brightness": lambda: ImageEnhance.Brightness(img).enhance(f),
           "color": lambda: ImageEnhance.Color(img).enhance(f),
           "contrast": lambda: ImageEnhance.Contrast(img).enhance(f),
           "sharpness": lambda: ImageEnhance.Sharpness(img).enhance(f),
           "posterize": lambda: ImageOps.posterize(img, 8 - round(level / 30 * 6)),
           "solarize": lambda: ImageOps.solarize(img, 255 * (30 - level) / 30),
           "autocontrast": lambda: ImageOps.autocontrast(img),
           "equalize": lambda: ImageOps.equalize(img)}[op]()
    want = np.asarray(ref)
    return ours, want if want.ndim == 3 else want[..., None]


@pytest.mark.parametrize("op", ["brightness", "color", "contrast", "sharpness", "posterize",
                                "solarize", "autocontrast", "equalize"])
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_colour_ops_match_pil(op: str, sign: float) -> None:
    for rgb in (True, False):
        if op == "color" and not rgb:
            continue
        ours, want = _pil_case(op, 20, sign, rgb)
        diff = np.abs(ours.astype(int) - want.astype(int))
        # PIL rounds in integers (contrast: the mean grey level is rounded first)
        assert diff.mean() < 1.0 and diff.max() <= 3, (op, sign, rgb, diff.max())


def test_geometric_ops_move_the_image_as_defined() -> None:
    from cnnlab.data.policies import OPS as P_OPS
    from cnnlab.data.policies import apply_ops

    x = torch.zeros(1, 1, 32, 32)
    x[..., 8:12, 8:12] = 1.0  # a small square
    tx = apply_ops(x, torch.tensor([P_OPS.index("translate_x")]), torch.tensor([3]), wide=True,
                   sign=torch.tensor([1.0]))  # 3/30 of 32 px = 3.2 px
    cols = tx[0, 0].sum(0)
    shift = float((cols * torch.arange(32)).sum() / cols.sum()) - 9.5
    assert abs(abs(shift) - 3.2) < 0.05
    rot = apply_ops(torch.ones(1, 1, 32, 32), torch.tensor([P_OPS.index("rotate")]),
                    torch.tensor([10]), wide=True, sign=torch.tensor([1.0]))  # 45 degrees
    assert float(rot[0, 0, 0, 0]) < 0.05 and float(rot[0, 0, 16, 16]) > 0.99  # black corners


def test_ours_draw_ops_per_image_kornias_per_batch() -> None:
    x = _batch(3, b=1).expand(64, -1, -1, -1).contiguous()  # 64 copies of one image
    torch.manual_seed(0)
    y = build_augment("trivialaugment")(x)
    same = [bool(torch.allclose(y[i], x[i], atol=1e-6)) for i in range(64)]
    assert 0 < sum(same) < 20  # identity (and magnitude-0) draws only
    distinct = {tuple(y[i].flatten()[:50].round(decimals=4).tolist()) for i in range(64)}
    assert len(distinct) > 30
    torch.manual_seed(0)
    y = build_augment("randaugment=1:30")(x)
    assert 0 < sum(bool(torch.allclose(y[i], x[i], atol=1e-6)) for i in range(64)) < 20


def test_a_bad_augment_setting_fails_before_any_data_is_read() -> None:
    from cnnlab.settings import SettingsError, resolve

    with pytest.raises(SettingsError, match="M must be a whole number from 0 to 30"):
        resolve({"augment": "hflip,randaugment=2:40"})
    assert resolve({"augment": "trivialaugment,erasing=0.3"}).augment == \
        "trivialaugment,erasing=0.3"
