"""channel_mean_std of uint8 images (a histogram per channel) equals the float64 sums."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.stats import channel_mean_std


@pytest.mark.parametrize("shape", [(7, 3, 9, 11), (1, 1, 4, 4), (50, 3, 32, 32)])
def test_histogram_stats_equal_the_float64_ones(shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    mean, std = channel_mean_std(x, chunk=3)
    f = x.double() / 255
    assert mean == pytest.approx(f.mean((0, 2, 3)).tolist(), abs=1e-12)
    assert std == pytest.approx(f.std((0, 2, 3), unbiased=False).clamp_min(1e-3).tolist(),
                                abs=1e-9)
    fm, fs = channel_mean_std(x.float())  # the float path
    assert fm == pytest.approx(mean, abs=1e-9) and fs == pytest.approx(std, abs=1e-9)
    flat = torch.full((2, 3, 5, 5), 7, dtype=torch.uint8)
    assert channel_mean_std(flat)[1] == [1e-3] * 3  # a constant channel: std floor
