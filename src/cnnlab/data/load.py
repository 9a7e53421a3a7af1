"""Turn any supported source into train/val/test ImageSets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data.cache import CacheMiss
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.data.sources.registry import AUTO, DEFAULT, detect_source, get_source
from cnnlab.data.sources.source import Source
from cnnlab.data.splits import stratified_split
from cnnlab.errors import DataError, name_list


def detect_format(path: Path) -> str:
    """Guess the source format from what is on disk."""
    return detect_source(path).name


def _resolve(path: Path | None, opts: LoadOptions) -> tuple[Source, Path | None]:
    """The source to read and the path it reads (None: a built-in set, which needs none)."""
    named = get_source(opts.format) if opts.format != AUTO else None  # unknown: fails first
    if path is None:
        return get_source(DEFAULT), None
    if named is not None and not named.uses_path:
        return named, None
    path = Path(path).expanduser()
    if named is None:
        return detect_source(path), path
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    return named, path


def _finish(data: ImageSet, source: Source, path: Path | None) -> ImageSet:
    """Record which source read the data, and from where."""
    if path is not None:
        data.meta.setdefault("name", path.stem if path.is_file() else path.name)
    data.meta["format"] = source.name
    if path is not None:
        data.meta["path"] = str(path)
    return data


def read_to_predict(path: Path | None, opts: LoadOptions, classes: list[str],
                    progress: Progress = None) -> ImageSet:
    """Images to predict on, which need no labels.

    A source may read otherwise for predicting (a folder that is not a tree of class folders
    is read whole, every image unlabeled). Labels are kept only when the source's classes are
    `classes` (the model's); otherwise they are unknown (-1) and meta["predict_note"] says
    why."""
    source, where = _resolve(path, opts)
    read = source.predict if where is not None and source.predict else source.read
    data = _finish(read(where, opts, progress), source, where)
    if data.classes and list(data.classes) != list(classes) and (data.labels >= 0).any():
        note = (f"its classes ({name_list(data.classes)}) are not the model's "
                f"({name_list(classes)}): labels unknown (-1)")
        data.labels = torch.full_like(data.labels, -1)
        data.classes = list(classes)
        data.meta["predict_note"] = f"{data.meta.get('path') or where}: {note}"
    return data


def read_source(path: Path | None, opts: LoadOptions, progress: Progress = None) -> ImageSet:
    """Read a source into one ImageSet whose `partition` marks train/val/test items."""
    source, where = _resolve(path, opts)
    if opts.cache_only and not source.root:  # arrays are not decoded: nothing is cached
        raise CacheMiss(f"{source.name}: read from arrays, not from the decode cache")
    return _finish(source.read(where, opts, progress), source, where)


def make_splits(data: ImageSet, opts: LoadOptions) -> DataSplits:
    """Use the source's partitions; split the rest stratified and seeded."""
    part = data.partition if data.partition is not None else np.full(len(data), "", dtype=str)
    if not (data.labels >= 0).any():
        return DataSplits(train=data.subset(np.arange(0)), val=None, test=data,
                          source=data.meta.get("name", ""), split_note="unlabeled")
    labels = data.labels.numpy()
    notes = [data.meta["layout_note"]] if data.meta.get("layout_note") else []
    pool = np.flatnonzero((part == "") | (part == "train"))
    train_idx, val_idx, test_idx = pool, np.flatnonzero(part == "val"), \
        np.flatnonzero(part == "test")
    unpartitioned = not (part != "").any()
    if unpartitioned and opts.test_split > 0:
        keep, out = stratified_split(labels[pool], opts.test_split, opts.seed)
        train_idx, test_idx = pool[keep], pool[out]
        notes.append(f"test = {opts.test_split:.0%} stratified split")
    if len(val_idx) == 0:
        # Keep val_split a fraction of the whole set when the test split was carved out too.
        frac = opts.val_split / (1 - opts.test_split) if unpartitioned else opts.val_split
        keep, out = stratified_split(labels[train_idx], min(frac, 0.9), opts.seed + 1)
        train_idx, val_idx = train_idx[keep], train_idx[out]
        if len(val_idx):
            notes.append(f"val = {opts.val_split:.0%} stratified split of the training data")
    train = data.subset(train_idx)
    where = data.meta.get("path") or data.meta.get("name", "data")  # the path the user gave
    if len(train) == 0 or not (train.labels >= 0).any():
        raise DataError(f"{where}: no labeled training images")
    if int((train.labels >= 0).sum()) < len(train):
        train = train.subset(np.flatnonzero(train.labels.numpy() >= 0))
    present = len(set(train.labels.tolist()))
    if present < 2:
        raise DataError(f"{where}: training data has {present} class; "
                        "a classifier needs at least 2")
    return DataSplits(train=train, val=data.subset(val_idx) if len(val_idx) else None,
                      test=data.subset(test_idx) if len(test_idx) else None,
                      source=data.meta.get("name", ""), split_note="; ".join(notes))


def load_data(path: str | Path | None = None, opts: LoadOptions | None = None,
              progress: Progress = None) -> DataSplits:
    """Read `path` (None = built-in digits) and split it into train/val/test."""
    opts = opts or LoadOptions()
    data = read_source(Path(path) if path is not None else None, opts, progress)
    return make_splits(data, opts)
