"""Folder of class sub-folders, optionally under train/val/test partition folders."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnnlab.data.decode import is_image_file
from cnnlab.errors import DataError

PARTITION_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                     "validation": "val", "dev": "val", "test": "test", "testing": "test"}


def _inside(path: Path, root: Path) -> bool:
    """True when `path` (resolved) lies in the tree under `root` (resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False
    return True


def _loops_back(path: Path, root: Path, skipped: list[str] | None) -> bool:
    """A directory symlink into the data tree itself: following it would list images twice."""
    if path.is_symlink() and (_inside(path, root) or not path.exists()):
        if skipped is not None:
            skipped.append(str(path))
        return True
    return False


def _images_in(folder: Path, root: Path | None = None,
               skipped: list[str] | None = None) -> list[Path]:
    # Directory symlinks are followed only when they lead out of the data tree (a class kept
    # on another disk); one pointing back into it (`loop -> .`) would duplicate images across
    # splits, so it is skipped. Each real folder is read once, which also ends symlink loops.
    root = root or folder
    out, seen = [], set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        here = Path(dirpath)
        real = here.resolve()
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and not _loops_back(here / d, root, skipped))
        out += [here / f for f in filenames if not f.startswith(".")
                and is_image_file(here / f) and (here / f).is_file()]
    return sorted(out)


def _subdirs(folder: Path, root: Path | None = None,
             skipped: list[str] | None = None) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and not _loops_back(p, root or folder, skipped))


def list_folder(root: Path, notes: list[str] | None = None
                ) -> tuple[list[Path], list[str], list[str], list[int]]:
    """Find (files, partitions, class names, labels) in a class-folder tree.

    Directory symlinks that point back into the tree are never followed nor made a class;
    a line saying which were skipped is appended to `notes`.
    """
    skipped: list[str] = []
    found = _list_folder(root, skipped)
    if skipped and notes is not None:
        shown = ", ".join(sorted(set(skipped))[:5])
        notes.append(f"{root}: skipped {len(set(skipped))} folder symlink(s) pointing back into "
                     f"the data folder ({shown})")
    return found


def _list_folder(root: Path, skipped: list[str]) -> tuple[list[Path], list[str], list[str],
                                                         list[int]]:
    subs = _subdirs(root, root, skipped)
    parts = {PARTITION_ALIASES[s.name.lower()]: s for s in subs
             if s.name.lower() in PARTITION_ALIASES}
    if parts and "train" not in parts and "test" not in parts and "val" not in parts:
        parts = {}
    groups: list[tuple[str, Path]] = list((p, d) for p, d in parts.items()) if parts else \
        [("", root)]
    if not subs:
        files = _images_in(root, root, skipped)
        if not files:
            raise DataError(f"{root}: no image files found")
        return files, [""] * len(files), [], [-1] * len(files)
    per_group: list[tuple[str, str, list[Path]]] = []
    for part, folder in groups:
        class_dirs = _subdirs(folder, root, skipped)
        if not class_dirs:
            loose = _images_in(folder, root, skipped)
            if part and loose:  # e.g. an unlabeled test/ folder
                per_group.append((part, "", loose))
                continue
            raise DataError(f"{folder}: expected one sub-folder per class")
        for cdir in class_dirs:
            files = _images_in(cdir, root, skipped)
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
