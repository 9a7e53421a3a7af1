"""The pixel scale of numeric arrays: which values mean black and white.

The scale of a batch never depends on its individual pixel values:
- an explicit `value_range=(lo, hi)` wins;
- else the range recorded when the model was trained (checkpoint config `value_range`);
- else the documented default by dtype: uint8 as is (0..255), floats and bools 0..1, other
  integers 0..255.
Values outside the range are clipped (and counted, so the caller can warn once).

Whole data files (npy, npz, CIFAR, IDX) are different: their range is decided once for the
entire file (`infer_range`), which is a property of the data set, not of one image.
"""

from __future__ import annotations

import math

import numpy as np

from cnnlab.errors import DataError

Range = tuple[float, float]


def default_range(dtype: np.dtype) -> Range:
    """The documented scale of a dtype: floats and bools 0..1, integers 0..255."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b" or np.issubdtype(dtype, np.floating):
        return 0.0, 1.0
    return 0.0, 255.0


def infer_range(arr: np.ndarray) -> Range:
    """The scale of a whole data set: 0..1 floats, 0..255, wider integers 0..max, else min..max."""
    a = np.asarray(arr)
    if a.dtype == np.uint8 or a.size == 0:
        return 0.0, 255.0
    if a.dtype == bool:
        return 0.0, 1.0
    lo, hi = float(a.min()), float(a.max())
    if np.issubdtype(a.dtype, np.floating):
        if lo >= 0 and hi <= 1:
            return 0.0, 1.0
        if lo >= 0 and hi <= 255:
            return 0.0, 255.0
        return lo, hi if hi > lo else lo + 1.0
    return (0.0, hi) if hi > 255 else (0.0, 255.0)


def parse_range(value: object, what: str = "value_range") -> Range:
    """(lo, hi) from a pair or a string like "0,255" / "-1..1"; hi must exceed lo."""
    if isinstance(value, str):
        parts = value.replace("..", ",").split(",")
    else:
        try:
            parts = list(value)  # type: ignore[call-overload]
        except TypeError:
            parts = []
    try:
        lo, hi = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected two numbers (lo, hi), e.g. 0,255, got "
                        f"{value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        raise DataError(f"{what}: need finite lo < hi, got {lo:g}, {hi:g}")
    return lo, hi


def scale_to_uint8(arr: np.ndarray, value_range: Range) -> tuple[np.ndarray, int]:
    """Map lo..hi to 0..255 (rounded); returns the uint8 array and how many values were clipped.
    A torch tensor is scaled in torch, with the same float64 arithmetic bit for bit, in the
    CPU's threads (numpy's took half of the report's robustness probes on 224 px photos)."""
    lo, hi = value_range
    if not isinstance(arr, np.ndarray) and hasattr(arr, "detach"):
        import torch

        t = arr.detach().cpu().to(torch.float64)
        outside = int(((t < lo) | (t > hi)).sum())
        scaled = (t - lo) * (255.0 / (hi - lo))
        return torch.round(scaled).clamp_(0, 255).to(torch.uint8).numpy(), outside
    a = np.asarray(arr)
    if a.dtype == np.uint8 and (lo, hi) == (0.0, 255.0):
        return a, 0
    a = a.astype(np.float64)
    outside = int(np.count_nonzero((a < lo) | (a > hi)))
    scaled = (a - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), outside


def clip_message(where: str, clipped: int, total: int, value_range: Range) -> str:
    """The one-line warning for clipped values."""
    lo, hi = value_range
    return (f"{where}: {clipped} of {total} pixel values outside the value range {lo:g}..{hi:g} "
            "were clipped (pass value_range=(lo, hi) to read the input on another scale)")
