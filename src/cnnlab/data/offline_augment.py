"""Offline augmentation, the EECS 445 way: write augmented image files plus a CSV index.

For every training image, `copies` augmented versions are written (each op of the spec applied
in order, probabilities defaulting to 1: `grayscale` always greys, as the seed's Grayscale());
with `keep_original` the original is kept too. Validation and test images are copied unchanged.
The index has the seed's columns `filename,semantic_label,partition,numeric_label,task` (plus
any other columns of an input CSV) and is read by `cnnlab train OUT/augmented_<name>.csv`.
Unpartitioned sources are split first (seeded, stratified, as `cnnlab train` would), so that
no augmented copy of a validation or test image can leak into training.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnlab.data.augment import build_augment
from cnnlab.data.imageset import ImageSet
from cnnlab.data.load import LoadOptions, make_splits, read_source
from cnnlab.data.options import CsvColumns
from cnnlab.data.sources.registry import source_for
from cnnlab.errors import CnnlabError, DataError
from cnnlab.io import write_csv

COLUMNS = ["filename", "semantic_label", "partition", "numeric_label", "task"]


@dataclass
class Item:
    """One image of the source and its index row."""

    rel: str  # file name relative to the output images folder
    row: dict  # the index row (filename filled in on writing)
    src: Path | None = None  # the original file, or
    array: np.ndarray | None = None  # the decoded image (HWC / HW uint8) of array sources
    label: str = ""  # for stratified splitting


@dataclass
class AugmentResult:
    """What the writer produced."""

    index: Path
    rows: int
    augmented: int
    counts: dict


def _array_items(data: ImageSet) -> list[Item]:
    out = []
    parts = data.partition if data.partition is not None else [""] * len(data)
    for i in range(len(data)):
        lab = int(data.labels[i])
        name = data.classes[lab] if lab >= 0 else "unlabeled"
        part = str(parts[i])
        img = data.images[i].permute(1, 2, 0).numpy()
        rel = f"{part + '/' if part else ''}{name}/{i:06d}.png"
        out.append(Item(rel, {"semantic_label": name if lab >= 0 else "", "partition": part,
                              "numeric_label": str(lab) if lab >= 0 else "", "task": ""},
                        array=img[..., 0] if img.shape[2] == 1 else img, label=str(lab)))
    return out


def _assign_partitions(items: list[Item], pcol: str, val_split: float, test_split: float,
                       seed: int) -> None:
    """Give unpartitioned items train/val/test like `cnnlab train` would split them."""
    if all(it.row.get(pcol) for it in items):
        return
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(it.label.split("/", 1)[0] if "/" in it.label else "", []).append(i)
    for idx in groups.values():
        names = sorted({items[i].label for i in idx})
        labels = torch.tensor([names.index(items[i].label) for i in idx])
        parts = np.asarray([items[i].row.get(pcol, "") for i in idx], dtype=str)
        stub = ImageSet(torch.zeros(len(idx), 1, 1, 1, dtype=torch.uint8), labels, names,
                        [str(j) for j in range(len(idx))], parts)
        splits = make_splits(stub, LoadOptions(val_split=val_split, test_split=test_split,
                                               seed=seed))
        for name, part in splits.items():
            for local in part.ids:
                items[idx[int(local)]].row[pcol] = name


def _load(it: Item) -> np.ndarray:
    if it.array is not None:
        return it.array
    try:
        with Image.open(it.src) as im:
            im = im.convert("L" if im.mode in ("1", "L", "I", "I;16", "F") else "RGB")
            return np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{it.src}: cannot read image ({exc})") from None


def _augment_one(img: np.ndarray, fn) -> np.ndarray:  # noqa: ANN001
    x = torch.from_numpy(np.array(img, copy=True))  # PIL arrays are read-only
    x = x.unsqueeze(-1) if x.ndim == 2 else x
    x = x.permute(2, 0, 1).unsqueeze(0).float() / 255.0
    y = fn(x)[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return y[..., 0] if y.shape[2] == 1 else y


def write_augmented(path: Path, out: Path, ops: str, copies: int = 1, keep_original: bool = True,
                    fmt: str = "auto", task: str | None = None, image_dir: Path | None = None,
                    columns: CsvColumns | None = None, seed: int = 0, val_split: float = 0.2,
                    test_split: float = 0.2, force: bool = False,
                    partitions: tuple[str, ...] = ("train",)) -> AugmentResult:
    """Write augmented copies of the training images of `path` plus a CSV index into `out`."""
    cols = columns or CsvColumns()
    fn = build_augment(ops, always=True)
    if fn is None:
        raise CnnlabError("--ops is empty: name at least one augmentation, e.g. rotate=20")
    if copies < 1 and not keep_original:
        raise CnnlabError("--copies 0 with --discard-original would leave no training images")
    path = Path(path).expanduser()
    source = source_for(fmt, path)
    opts = LoadOptions(format=source.name, task=task, columns=cols, use_cache=False,
                       image_dir=str(image_dir) if image_dir is not None else None)
    # A file source is copied file by file with its own index rows; arrays are written out.
    index_rows = source.rows(path, opts) if source.rows is not None else None
    if index_rows is not None:
        items = [Item(r.rel, r.row, src=r.src, label=r.stratum) for r in index_rows.rows]
        name, pcol, pathcol = index_rows.name, index_rows.part_col, index_rows.path_col
        fieldnames = index_rows.fieldnames
    else:
        data = read_source(path, LoadOptions(format=source.name, use_cache=False))
        items, name, pcol = _array_items(data), data.meta.get("name", path.stem), "partition"
        fieldnames, pathcol = COLUMNS, "filename"
    _assign_partitions(items, pcol, val_split, test_split, seed)

    out = Path(out).expanduser()
    index = out / f"augmented_{name}.csv"
    images = out / "images"
    if images.exists() and any(images.iterdir()):
        if not force:
            raise CnnlabError(f"{out}: already holds augmented images; pass --force to replace "
                              "them or choose another --out")
        shutil.rmtree(images)
    images.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rows, n_aug = [], 0
    counts: dict[str, int] = {}
    for it in items:
        part = it.row.get(pcol, "")
        augment_it = part in partitions
        if not augment_it or keep_original:
            dest = images / it.rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if it.src is not None:
                shutil.copyfile(it.src, dest)
            else:
                Image.fromarray(it.array).save(dest)
            rows.append({**it.row, pathcol: it.rel})
            counts[part] = counts.get(part, 0) + 1
        if not augment_it:
            continue
        img = _load(it)
        stem = it.rel.rsplit(".", 1)[0] if "." in Path(it.rel).name else it.rel
        for i in range(copies):
            rel = f"{stem}_aug_{i}.png"
            dest = images / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(_augment_one(img, fn)).save(dest)
            rows.append({**it.row, pathcol: rel})
            counts[part] = counts.get(part, 0) + 1
            n_aug += 1
    write_csv(index, rows, fieldnames)
    return AugmentResult(index, len(rows), n_aug, counts)

