"""Arrays (npy/npz, CIFAR, IDX, digits) into one ImageSet at the asked size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data import cache
from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import LoadOptions
from cnnlab.data.sources.common import (
    adjust,
    center_crop_images,
    check_class_count,
    class_names_for,
    empty_class_note,
    to_labels,
    to_uint8_nchw,
)
from cnnlab.data.value_range import infer_range, parse_range
from cnnlab.errors import DataError


def check_resize_fits(n: int, channels: int, size: int | None, where: str) -> None:
    """Refuse a resize whose result cannot fit in memory, before allocating it."""
    if size is None:
        return
    need = n * channels * size * size
    avail = cache.available_memory()
    if avail is not None and need > avail * 0.8:
        raise DataError(f"{where}: {n} images resized to {channels}x{size}x{size} need "
                        f"{cache.human_bytes(need)}, more than the memory available "
                        f"({cache.human_bytes(avail)}); use a smaller --image-size")


def fit_size(data: ImageSet, opts: LoadOptions, where: str) -> None:
    """Resize `data`'s images to the options' size and channels, refused if it cannot fit."""
    size = (opts.image_size, opts.image_size) if opts.image_size else None
    check_resize_fits(len(data), opts.channels or data.channels, opts.image_size, where)
    data.images = adjust(data.images.numpy(), size, opts.channels)


def from_arrays(parts: dict[str, tuple[np.ndarray, np.ndarray | None]], names: list[str] | None,
                where: str, files: dict[str, tuple[Path, Path | None]] | None = None,
                value_range: tuple[float, float] | None = None,
                unlabeled_value: int | None = None) -> ImageSet:
    """One ImageSet from {partition: (images, labels or None)} arrays, checked and scaled."""
    images, labels, ids, partition, label_where = [], [], [], [], []
    ranges = {}
    for part, (x, y) in parts.items():
        # Name the very file at fault when the arrays came from separate files.
        xf, yf = (files or {}).get(part, (None, None))
        x = np.asarray(x)
        if x.dtype != np.uint8 and x.dtype.kind in "biuf" and x.size:
            # uint8 is always 0..255; other arrays: the given range, else the file's own.
            ranges[part] = parse_range(value_range) if value_range is not None else \
                infer_range(x)
        x8 = to_uint8_nchw(x, str(xf) if xf else f"{where} ({part} images)", ranges.get(part))
        label_where.append(f"{yf} (for {xf.name})" if yf and xf else
                           f"{where} ({part} labels)" if part else where)
        images.append(x8)
        labels.append(to_labels(y, x8.shape[0], label_where[-1], unlabeled_value))
        ids += [str(i) for i in range(x8.shape[0])]
        partition += [part] * x8.shape[0]
    shapes = {a.shape[1:] for a in images}
    if len(shapes) > 1:
        raise DataError(f"{where}: splits have different image shapes {sorted(shapes)}")
    lab = np.concatenate(labels)
    if names is None and (lab >= 0).any():  # name the labels file holding the largest label
        top = int(np.argmax([y.max() if len(y) else -1 for y in labels]))
        check_class_count(int(lab.max()) + 1, len(lab), label_where[top])
    classes = class_names_for(lab, names, where)
    notes = []
    if unlabeled_value is not None:
        given = sum(int((y8 == -1).sum()) for (_, y), y8 in zip(parts.values(), labels,
                                                                strict=True) if y is not None)
        notes.append(f"{where}: {given} image(s) labeled {unlabeled_value} used as unlabeled "
                     "(not trained on)")
    counts = np.bincount(lab[lab >= 0], minlength=len(classes))
    if (note := empty_class_note(counts, classes, where)) is not None:
        notes.append(note)
    # The scale non-uint8 training arrays were read on: predicting must use the same one.
    rng = ranges.get("train", ranges.get("", next(iter(ranges.values()), None)))
    meta: dict = {"value_range": [float(v) for v in rng]} if rng is not None else {}
    if notes:
        meta["data_notes"] = notes
    return ImageSet(torch.from_numpy(np.concatenate(images)), torch.from_numpy(lab), classes, ids,
                    np.asarray(partition, dtype=str), meta)


def read_arrays(parts: dict[str, tuple[np.ndarray, np.ndarray | None]], names: list[str] | None,
                path: Path, opts: LoadOptions,
                files: dict[str, tuple[Path, Path | None]] | None = None) -> ImageSet:
    """from_arrays with the options' value range and unlabeled value, then fitted to size."""
    data = from_arrays(parts, names, str(path), files=files, value_range=opts.value_range,
                       unlabeled_value=opts.unlabeled_value)
    fit_size(data, opts, str(path))
    if opts.crop_size:
        data.images = center_crop_images(data.images, opts.crop_size)
    return data
