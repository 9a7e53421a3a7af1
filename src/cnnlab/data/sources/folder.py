"""Folder of class sub-folders, optionally under train/val/test partition folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.decode import is_image_file
from cnnlab.errors import DataError

PARTITION_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                     "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_folder(root: Path) -> tuple[list[Path], list[str], list[str], list[int]]:
    """Find (files, partitions, class names, labels) in a class-folder tree."""
    subs = _subdirs(root)
    parts = {PARTITION_ALIASES[s.name.lower()]: s for s in subs
             if s.name.lower() in PARTITION_ALIASES}
    if parts and "train" not in parts and "test" not in parts and "val" not in parts:
        parts = {}
    groups: list[tuple[str, Path]] = list((p, d) for p, d in parts.items()) if parts else \
        [("", root)]
    if not subs:
        files = _images_in(root)
        if not files:
            raise DataError(f"{root}: no image files found")
        return files, [""] * len(files), [], [-1] * len(files)
    per_group: list[tuple[str, str, list[Path]]] = []
    for part, folder in groups:
        class_dirs = _subdirs(folder)
        if not class_dirs:
            loose = _images_in(folder)
            if part and loose:  # e.g. an unlabeled test/ folder
                per_group.append((part, "", loose))
                continue
            raise DataError(f"{folder}: expected one sub-folder per class")
        for cdir in class_dirs:
            files = _images_in(cdir)
            if not files:
                raise DataError(f"{cdir}: empty class folder (no image files)")
            per_group.append((part, cdir.name, files))
    classes = sorted({c for _, c, _ in per_group if c})
    if len(classes) < 2 and any(p in ("", "train") for p, _, _ in per_group):
        raise DataError(f"{root}: found {len(classes)} class folder(s); a classifier needs at "
                        "least 2 (layout: ROOT/<class>/*.jpg or ROOT/train/<class>/*.jpg)")
    index = {c: i for i, c in enumerate(classes)}
    files, partitions, labels = [], [], []
    for part, cname, flist in per_group:
        files += flist
        partitions += [part] * len(flist)
        labels += [index[cname] if cname else -1] * len(flist)
    return files, partitions, classes, labels


def ids_for(files: list[Path], root: Path) -> list[str]:
    """Ids are file paths relative to the data root, with forward slashes."""
    out = []
    for f in files:
        try:
            out.append(f.relative_to(root).as_posix())
        except ValueError:
            out.append(str(f))
    return out


def partition_array(parts: list[str]) -> np.ndarray:
    """Partitions as a numpy string array."""
    return np.asarray(parts, dtype=object).astype(str)
