"""Helpers shared by the array-based readers."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.value_range import infer_range, scale_to_uint8
from cnnlab.errors import DataError

MAX_CLASSES = 100_000  # a label beyond this is a damaged file, not a real class index
# Sparse class indices are fine up to this many classes whatever the size of the set
# (ImageNet-1k indices on a small sample); beyond it a set needs at least one image per class.
CLASS_FLOOR = 1000


def to_uint8_nchw(arr: np.ndarray, where: str,
                  value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Accept [N,H,W], [N,H,W,C] or [N,C,H,W] arrays of any numeric dtype; return uint8 NCHW.

    `value_range` (lo, hi) maps lo..hi to 0..255 (clipping the rest); without it the range of
    the whole array decides (data/value_range.py: infer_range).
    """
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{where}: images must be a real-valued numeric array, got dtype "
                        f"{arr.dtype}")
    if arr.ndim == 2 and arr.shape[0] > 0:
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            raise DataError(f"{where}: a 2-D array is rows of flattened images, and rows of "
                            f"length {arr.shape[1]} are not square images (one {arr.shape[0]}x"
                            f"{arr.shape[1]} image: give it as shape (1, {arr.shape[0]}, "
                            f"{arr.shape[1]}))")
        arr = arr.reshape(arr.shape[0], side, side)
    if arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim == 4:
        if arr.shape[-1] in (1, 3, 4) and arr.shape[1] not in (1, 3):
            arr = arr.transpose(0, 3, 1, 2)
        elif arr.shape[1] not in (1, 3, 4):
            raise DataError(f"{where}: cannot tell the channel axis of shape {arr.shape}")
    else:
        raise DataError(f"{where}: images must have 3 or 4 dimensions "
                        f"([N,H,W] or [N,H,W,C]), got shape {arr.shape}")
    if arr.shape[0] == 0 or min(arr.shape[2:]) < 1:
        raise DataError(f"{where}: no images in array of shape {arr.shape}")
    if arr.shape[1] == 4:
        arr = arr[:, :3]
    if arr.dtype == np.uint8 and value_range is None:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise DataError(f"{where}: images contain NaN or infinite values")
    out, _ = scale_to_uint8(arr, value_range or infer_range(arr))
    return np.ascontiguousarray(out)


def to_labels(arr: np.ndarray | None, n: int, where: str,
              unlabeled_value: int | None = None) -> np.ndarray:
    """Validate a 1-D integer label array of length n (None -> all -1, unlabeled).

    A label equal to `unlabeled_value` marks an unlabeled image (-1 inside cnnlab); without it
    every label must be a class index, so a -1 is refused rather than silently dropped.
    """
    if arr is None:
        return np.full(n, -1, dtype=np.int64)
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{where}: labels must be one-dimensional, got shape {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{where}: {len(arr)} labels for {n} images")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"{where}: labels must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise DataError(f"{where}: labels must be whole numbers")
    if np.issubdtype(arr.dtype, np.floating) and len(arr) and np.abs(arr).max() >= MAX_CLASSES:
        raise DataError(f"{where}: label {np.abs(arr).max():g} is too large (labels are class "
                        f"indices below {MAX_CLASSES})")
    out = arr.astype(np.int64)
    if unlabeled_value is not None:
        out = np.where(out == unlabeled_value, -1, out)
        negative = (out < -1) | ((out == -1) & (arr != unlabeled_value))
    else:
        negative = out < 0
    if negative.any():
        bad = int(arr[np.flatnonzero(negative)[0]])
        hint = f"; if {bad} means 'unlabeled', pass --unlabeled-value {bad}" \
            if bad < 0 and unlabeled_value is None else ""
        raise DataError(f"{where}: {int(negative.sum())} negative label(s) such as {bad} "
                        f"(labels are class indices 0, 1, ...){hint}")
    if len(out) and out.max() >= MAX_CLASSES:
        raise DataError(f"{where}: label {out.max()} is too large (labels are class indices "
                        f"below {MAX_CLASSES})")
    return out


def check_class_count(num_classes: int, n: int, where: str, label: int | None = None) -> None:
    """Refuse a class count that cannot be real: more classes than images (and the floor)."""
    limit = min(MAX_CLASSES, max(CLASS_FLOOR, n))  # room for sparse class indices
    if num_classes > limit:
        label = num_classes - 1 if label is None else label
        raise DataError(f"{where}: label {label} is too large for {n} images: it "
                        f"would make a {num_classes}-class model (at most {limit} classes; "
                        "labels are class indices 0, 1, ...)")


def empty_class_note(counts: np.ndarray, classes: list[str], where: str) -> str | None:
    """A warning when some class indices have no image at all (None when every class has)."""
    empty = [classes[i] for i in np.flatnonzero(counts == 0)]
    if not empty:
        return None
    shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
    return (f"warning: {where}: {len(empty)} of {len(classes)} classes have no images "
            f"({shown}); labels are class indices, so gaps become empty classes")


def adjust(images: np.ndarray, size: tuple[int, int] | None, channels: int | None) -> torch.Tensor:
    """Convert channel count and resize (bilinear, antialiased) a uint8 NCHW array."""
    t = torch.from_numpy(np.ascontiguousarray(images))
    if channels is not None and t.shape[1] != channels:
        if channels == 3 and t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and t.shape[1] == 3:
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            t = (t.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"cannot convert {t.shape[1]} channels to {channels}")
    if size is not None and tuple(t.shape[2:]) != tuple(size):
        out = []
        for chunk in torch.split(t, 4096):
            r = F.interpolate(chunk.float(), size=size, mode="bilinear", antialias=True,
                              align_corners=False)
            out.append(r.round().clamp(0, 255).to(torch.uint8))
        t = torch.cat(out)
    return t


def center_crop_images(images: torch.Tensor, crop: int) -> torch.Tensor:
    """Centre crop uint8 NCHW images to crop x crop as torchvision's CenterCrop (zero padding)."""
    h, w = images.shape[2:]
    if crop > h or crop > w:
        ph, pw = max(0, crop - h), max(0, crop - w)
        images = F.pad(images, (pw // 2, (pw + 1) // 2, ph // 2, (ph + 1) // 2))
        h, w = images.shape[2:]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    return images[:, :, top: top + crop, left: left + crop].contiguous()


def class_names_for(labels: np.ndarray, names: list[str] | None = None,
                    where: str = "data") -> list[str]:
    """Class names for integer labels: the given names, else '0'..'K-1'."""
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    if names is not None:
        if k > len(names):
            raise DataError(f"{where}: label {k - 1} has no class name ({len(names)} names "
                            "given)")
        return list(names)
    check_class_count(k, len(labels), where)
    return [str(i) for i in range(k)]
