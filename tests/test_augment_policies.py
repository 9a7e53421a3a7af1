"""RandAugment, TrivialAugmentWide, AutoAugment and random erasing as --augment ops (kornia)."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.augment import build_augment, parse_spec
from cnnlab.errors import CnnlabError

POLICIES = ["randaugment", "randaugment=3:15", "trivialaugment", "autoaugment", "erasing=1"]


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
