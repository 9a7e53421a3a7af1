"""Folder of class sub-folders, optionally under train/val/test partition folders.

Layouts (`layout`):
- "classes": ROOT/<class>/... ; every top folder is a class.
- "splits": ROOT/<split>/<class>/... ; every top folder is a partition. Folders with a known
  partition name (train, training_set, val, dev, test_set, ...) get that split; the others
  get the splits still free, the largest folder first (train, then test, then val).
- "auto": splits when top folders carry partition names (Kaggle's training_set/test_set);
  other image folders beside them are ignored (with a note), except that class folders of
  loose images beside a test/ or val/ folder form the training pool (ROOT/cat, ROOT/dog,
  ROOT/test). Without partition names the top folders are classes, but a two-level layout
  whose top folders hold no images but the same class folders is refused: it reads either
  way, so the user passes the layout.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cnnlab.data.decode import is_image_file
from cnnlab.data.imageset import PARTITIONS, ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.data.sources.decoded import decode_files
from cnnlab.data.sources.source import IndexRow, IndexRows, Source
from cnnlab.errors import DataError

LAYOUTS = ("auto", "classes", "splits")
_SPLIT_WORDS = {
    "train": ("train", "training", "trainset", "trainingset", "train_set", "training_set",
              "train_data", "training_data", "train_images", "training_images"),
    "val": ("val", "valid", "validation", "valset", "val_set", "valid_set", "validation_set",
            "val_data", "valid_data", "validation_data", "val_images", "validation_images",
            "dev", "devset", "dev_set", "development"),
    "test": ("test", "testing", "testset", "test_set", "testing_set", "test_data",
             "testing_data", "test_images", "testing_images", "holdout", "hold_out"),
}
PARTITION_ALIASES = {w: split for split, words in _SPLIT_WORDS.items() for w in words}


def split_name(folder_name: str) -> str | None:
    """The split a folder name stands for ("Training Set" -> "train"), or None."""
    key = re.sub(r"[\s.\-]+", "_", folder_name.strip().lower())
    return PARTITION_ALIASES.get(key)


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


# Where the current listing started and which symlinks it skipped (set by read_folder).
_SCAN: dict = {"root": None, "skipped": None}


def _images_in(folder: Path) -> list[Path]:
    # Directory symlinks are followed only when they lead out of the data tree (a class kept
    # on another disk); one pointing back into it (`loop -> .`) would duplicate images across
    # splits, so it is skipped. Each real folder is read once, which also ends symlink loops.
    root, skipped = _SCAN["root"] or folder, _SCAN["skipped"]
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


def _loose_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p)
                  and not p.name.startswith("."))


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
                  and not _loops_back(p, _SCAN["root"] or folder, _SCAN["skipped"]))


@dataclass
class FolderListing:
    """Files of a folder tree with their partition, label and class names, and how it was read."""

    files: list[Path]
    parts: list[str]
    classes: list[str]
    labels: list[int]
    note: str = ""  # e.g. "folders as splits: training_set -> train, test_set -> test"
    skipped_links: list[str] = field(default_factory=list)  # symlinks back into the tree


def _two_level(subs: list[Path]) -> tuple[bool, list[str]]:
    """True when every top folder holds no loose images and the same (>= 2) class folders."""
    if len(subs) < 2:
        return False, []
    names = None
    for s in subs:
        if _loose_images(s):
            return False, []
        inner = {d.name for d in _subdirs(s)}
        if len(inner) < 2:
            return False, []
        names = inner if names is None else names
        if inner != names:
            return False, []
    return True, sorted(names or [])


def _assign_splits(root: Path, subs: list[Path]) -> dict[str, Path]:
    """Map split -> folder: by name, then free splits to unnamed folders by size."""
    chosen: dict[str, Path] = {}
    unnamed = []
    for s in subs:
        split = split_name(s.name)
        if split is None:
            unnamed.append(s)
        elif split in chosen:
            raise DataError(f"{root}: both {chosen[split].name}/ and {s.name}/ look like the "
                            f"{split} split; keep one, or pass --layout classes")
        else:
            chosen[split] = s
    free = [p for p in ("train", "test", "val") if p not in chosen]
    if len(unnamed) > len(free):
        extra = ", ".join(f"{s.name}/" for s in unnamed)
        raise DataError(f"{root}: cannot tell which split {extra} hold (at most train, val and "
                        "test; rename them train/val/test)")
    unnamed.sort(key=lambda s: (-len(_images_in(s)), s.name))
    for split, s in zip(free, unnamed, strict=False):
        chosen[split] = s
    return chosen


def read_folder(root: Path, layout: str = "auto") -> FolderListing:
    """List a class-folder tree, deciding (or following `layout`) whether top folders are splits.

    Directory symlinks that point back into the tree are never followed nor made a class; the
    listing names the ones it skipped."""
    if layout not in LAYOUTS:
        raise DataError(f"--layout {layout!r}: choose {', '.join(LAYOUTS)}")
    return _scanned(root, lambda: _read_folder(root, layout))


def read_all_images(root: Path) -> FolderListing:
    """Every image under `root`, unlabeled: what predicting reads from a folder that is not a
    tree of class folders (it needs no labels)."""
    return _scanned(root, lambda: _unlabeled(root))


def _scanned(root: Path, read: Callable[[], FolderListing]) -> FolderListing:
    """read() with _SCAN set for a listing of `root`; the listing names the symlinks skipped."""
    skipped: list[str] = []
    _SCAN.update(root=root, skipped=skipped)
    try:
        got = read()
    finally:
        _SCAN.update(root=None, skipped=None)
    got.skipped_links = sorted(set(skipped))
    return got


def _unlabeled(root: Path) -> FolderListing:
    files = _images_in(root)
    if not files:
        raise DataError(f"{root}: no image files found")
    return FolderListing(files, [""] * len(files), [], [-1] * len(files))


def _read_folder(root: Path, layout: str) -> FolderListing:
    subs = _subdirs(root)
    if not subs:
        return _unlabeled(root)
    notes: list[str] = []
    groups: list[tuple[str, Path]] = []  # (split, folder holding class folders)
    pool_classes: list[Path] = []  # class folders of the unpartitioned pool
    if layout == "classes":
        groups = [("", root)]
    elif layout == "splits":
        chosen = _assign_splits(root, subs)
        groups = list(chosen.items())
        notes.append(_split_note(chosen))
    else:
        with_images = [s for s in subs if _images_in(s)]
        named = [s for s in with_images if split_name(s.name)]
        others = [s for s in with_images if not split_name(s.name)]
        if named:
            chosen = _assign_splits(root, named)
            groups = list(chosen.items())
            notes.append(_split_note(chosen))
            if others and "train" not in chosen and all(_loose_images(s) for s in others):
                # ROOT/cat, ROOT/dog beside ROOT/test: the class folders are the training pool.
                pool_classes = others
                notes.append(f"{', '.join(f'{s.name}/' for s in others)} as classes of the "
                             "training data")
            elif others:
                notes.append(f"ignored {', '.join(f'{s.name}/' for s in others)} (not a split "
                             "name; --layout splits uses them too)")
        else:
            two, inner = _two_level(with_images)
            if two:
                tops = ", ".join(f"{s.name}/" for s in with_images)
                more = ", ..." if len(inner) > 4 else ""
                raise DataError(f"{root}: {tops} each hold the same class folders "
                                f"({', '.join(inner[:4])}{more}); pass --layout splits to read "
                                "them as train/val/test splits or --layout classes to read them "
                                "as classes")
            groups = [("", root)]
    per_group: list[tuple[str, str, list[Path]]] = []
    for cdir in pool_classes:
        per_group.append(("", cdir.name, _images_in(cdir)))
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
    return FolderListing(files, partitions, classes, labels, "; ".join(notes))


def _split_note(chosen: dict[str, Path]) -> str:
    return "folders as splits: " + ", ".join(f"{chosen[p].name}/ -> {p}" for p in PARTITIONS
                                             if p in chosen)


def ids_for(files: list[Path], root: Path) -> list[str]:
    """Ids are file paths relative to the data root, with forward slashes."""
    out = []
    for f in files:
        try:
            out.append(f.relative_to(root).as_posix())
        except ValueError:
            out.append(str(f))
    return out


def _folder_set(path: Path, opts: LoadOptions, progress: Progress,
                listing: FolderListing | None = None) -> ImageSet:
    """Decode an image file or a folder tree (`listing`: how the tree was read, else by layout)."""
    notes: dict = {}
    if path.is_file():
        listing, ids = FolderListing([path], [""], [], [-1]), [path.name]
    else:
        listing = listing or read_folder(path, opts.layout)
        ids = ids_for(listing.files, path)
        if listing.note:
            notes["layout_note"] = listing.note
        if listing.skipped_links:
            shown = ", ".join(listing.skipped_links[:5])
            notes["data_notes"] = [f"{path}: skipped {len(listing.skipped_links)} folder "
                                   f"symlink(s) pointing back into the data folder ({shown})"]
    return decode_files(listing.files, listing.parts, listing.classes, listing.labels, ids, opts,
                        {"fmt": "folder", "root": str(path.resolve()), "layout": opts.layout},
                        progress, notes)


def _predict(path: Path, opts: LoadOptions, progress: Progress) -> ImageSet:
    """A folder that is not a tree of class folders is read whole, every image unlabeled."""
    if not path.is_dir():
        return _folder_set(path, opts, progress)
    try:
        listing, note = read_folder(path, opts.layout), None
    except DataError as exc:  # no class folders to read labels from: every image
        listing = read_all_images(path)
        why = str(exc).removeprefix(f"{path}: ")
        note = f"read every image under it, unlabeled ({why})"
    data = _folder_set(path, opts, progress, listing)
    if note:
        data.meta["predict_note"] = f"{path}: {note}"
    return data


def _detect(path: Path) -> bool:
    return path.is_dir() or is_image_file(path)


def _files(path: Path, opts: LoadOptions) -> list[Path]:
    return [path] if path.is_file() else read_folder(path, opts.layout).files


def _root(path: Path, image_dir: str | None) -> Path:
    return path.parent if path.is_file() else path


def _rows(path: Path, opts: LoadOptions) -> IndexRows | None:
    if not path.is_dir():
        return None  # a single image: written out from its decoded array
    got = read_folder(path)
    rows = [IndexRow(f, rel, {"semantic_label": got.classes[lab] if lab >= 0 else "",
                              "partition": part, "numeric_label": str(lab) if lab >= 0 else "",
                              "task": ""}, str(lab))
            for f, rel, part, lab in zip(got.files, ids_for(got.files, path), got.parts,
                                         got.labels, strict=True)]
    return IndexRows(path.name, rows, ["filename", "semantic_label", "partition",
                                       "numeric_label", "task"], "filename", "partition")


# The catch-all: any folder, or one image file.
SOURCE = Source("folder", _folder_set, _detect, priority=90, files=_files, root=_root,
                predict=_predict, rows=_rows)
