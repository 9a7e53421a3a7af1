"""Turn any supported source into train/val/test ImageSets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.choices import FORMATS
from cnnlab.data import cache
from cnnlab.data.decode import decode_many, image_info, is_image_file
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.data.sources import arrays, cifar, idx
from cnnlab.data.sources.common import (
    adjust,
    center_crop_images,
    check_class_count,
    class_names_for,
    empty_class_note,
    to_labels,
    to_uint8_nchw,
)
from cnnlab.data.sources.csvindex import CsvColumns, read_csv_index
from cnnlab.data.sources.folder import FolderListing, ids_for, read_all_images, read_folder
from cnnlab.data.splits import stratified_split
from cnnlab.data.value_range import infer_range, parse_range
from cnnlab.errors import DataError, name_list

DEFAULT_FILE_IMAGE_SIZE = 64


@dataclass
class LoadOptions:
    """How to read and split a source; every field has a sensible default."""

    format: str = "auto"
    image_size: int | None = None
    channels: int | None = None
    resize: str = "crop"
    val_split: float = 0.2
    test_split: float = 0.2
    seed: int = 0
    task: str | None = None
    image_dir: str | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    skip_bad: bool = False
    use_cache: bool = True
    default_image_size: int = DEFAULT_FILE_IMAGE_SIZE
    # Arrays (npy/npz/CIFAR/IDX): values lo..hi are black..white; None = decided per file
    # from its whole content (data/value_range.py), recorded in meta["value_range"].
    value_range: tuple[float, float] | None = None
    layout: str = "auto"  # folders: auto | classes | splits (see data/sources/folder.py)
    # Centre crop of this side after resizing to image_size (torchvision's Resize(256) then
    # CenterCrop(224) is resize="shorter", image_size=256, crop_size=224).
    crop_size: int | None = None
    # The label value that marks an unlabeled image in npy/npz/IDX/CIFAR labels (e.g. -1);
    # None: every label must be a class index, and a -1 is refused rather than dropped.
    unlabeled_value: int | None = None
    # CSV partitions whose rows are skipped (and counted), e.g. ("challenge",); any other
    # partition that is not train/val/test is refused with its line.
    skip_partitions: tuple[str, ...] = ()


Progress = Callable[[str, int], Callable[[int], None]] | None


def detect_format(path: Path) -> str:
    """Guess the source format from what is on disk."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".csv"):
            return "csv"
        if name.endswith((".npy", ".npz")):
            return "npy"
        if "idx" in name or name.endswith("ubyte"):
            return "idx"
        if is_image_file(path):
            return "folder"
        raise DataError(f"{path}: cannot tell the data format; pass --format")
    if cifar.is_cifar_dir(path):
        return "cifar"
    if any(path.glob("*_images.npy")) or any(path.glob("*.npz")):
        return "npy"
    if any(p.name for p in path.glob("*idx3-ubyte*")):
        return "idx"
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) == 1 and not any(p.is_dir() and not p.name.startswith(".") and p.name != "images"
                                  for p in path.iterdir()):
        return "csv"
    if len(csvs) == 1 and (path / "images").is_dir():
        return "csv"
    return "folder"


def _file_channels(files: list[Path], opts: LoadOptions) -> int:
    if opts.channels is not None:
        return opts.channels
    # Grayscale data sets stay single-channel: a third of the work for the same information.
    for f in files[:: max(1, len(files) // 16)][:16]:
        try:
            _, _, mode = image_info(f)
        except DataError:
            continue
        if mode not in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
            return 3
    return 1


def _decode_files(files: list[Path], parts: list[str], classes: list[str], labels: list[int],
                  ids: list[str], opts: LoadOptions, settings: dict, progress: Progress,
                  notes: dict | None = None) -> ImageSet:
    size = opts.image_size or opts.default_image_size
    crop = opts.crop_size
    channels = _file_channels(files, opts)
    settings = {**settings, "size": size, "channels": channels, "resize": opts.resize,
                "skip_bad": opts.skip_bad, **({"crop": crop} if crop else {})}
    key = cache.cache_key(files, settings) if opts.use_cache else ""
    if key and (hit := cache.load_cached(key)) is not None:
        hit.meta["cache"] = "hit"
        return hit
    side = crop or size
    shape = (len(files), channels, side, side)
    # Decode straight into the cache file: a folder larger than RAM never sits in memory.
    # Its size is known before decoding: what fits neither on disk nor in memory is refused.
    writer, space_note = _open_writer(key, shape, settings.get("root") or settings.get("csv"))
    if writer is None:
        key = ""  # in memory: there is no room (or no wish) for a cache entry either
    tick = progress("decoding images", len(files)) if progress else None
    try:
        arr, kept = decode_many(files, (size, size), channels, opts.resize, opts.skip_bad, tick,
                                out=None if writer is None else writer.images, crop=crop)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    meta = dict(notes or {})
    if space_note:
        meta["data_notes"] = [*meta.get("data_notes", []), space_note]
    if len(kept) < len(files):
        meta["skipped_bad_images"] = len(files) - len(kept)
    if writer is not None:
        if len(kept) < len(files):  # the kept rows are at the front; write an exact-size entry
            try:
                smaller = cache.create_cached(key, (len(kept), *arr.shape[1:]))
            except cache.CacheSpaceError:
                smaller = None
            full, writer = writer, smaller
            if writer is not None:
                cache.copy_rows(arr, np.arange(len(kept)), writer.images)
            arr = np.array(arr[: len(kept)]) if writer is None else arr
            full.abort()
        if writer is not None:
            hit = writer.commit([labels[i] for i in kept], classes, [ids[i] for i in kept],
                                [parts[i] for i in kept], meta)
            if hit is not None:
                hit.meta["cache"] = "written"
                return hit
            arr = np.array(arr[: len(kept)])  # could not finish the cache: keep it in memory
        key = ""
    data = ImageSet(torch.from_numpy(arr), torch.tensor([labels[i] for i in kept],
                                                        dtype=torch.int64),
                    classes, [ids[i] for i in kept], np.asarray([parts[i] for i in kept],
                                                                dtype=str), meta)
    if key:
        cache.save_cached(key, data)
        data.meta["cache"] = "written"
    return data


def _open_writer(key: str, shape: tuple[int, ...], where: str | None
                 ) -> tuple[cache.CacheWriter | None, str | None]:
    """(cache writer or None for in-memory decoding, a note when the cache had no room)."""
    need = int(np.prod(shape))
    what = (f"{where}: {shape[0]} images decoded at {shape[1]}x{shape[2]}x{shape[3]} need "
            f"{cache.human_bytes(need)}")
    avail = cache.available_memory()
    fits_memory = avail is None or need <= avail * 0.8  # the rest: the model and batches
    if not key:
        if not fits_memory:
            raise DataError(f"{what}, more than the memory available "
                            f"({cache.human_bytes(avail or 0)}); use a smaller --image-size "
                            "(or the decode cache, which keeps the images on disk)")
        return None, None
    try:
        writer = cache.create_cached(key, shape)
    except cache.CacheSpaceError as exc:
        if not fits_memory:
            raise DataError(f"{what}: the decode cache {exc.folder} has "
                            f"{cache.human_bytes(exc.free)} free and memory "
                            f"{cache.human_bytes(avail or 0)}; set CNNLAB_CACHE to a folder with "
                            f"{cache.human_bytes(need)} free, or use a smaller --image-size") \
                from None
        return None, (f"decode cache {exc.folder} has {cache.human_bytes(exc.free)} free, "
                      f"{cache.human_bytes(need)} needed: decoded in memory instead (set "
                      "CNNLAB_CACHE to a folder with more room to keep a cache)")
    if writer is None and not fits_memory:
        raise DataError(f"{what}, more than the memory available "
                        f"({cache.human_bytes(avail or 0)}), and the decode cache "
                        f"{cache.cache_root()} cannot be written; set CNNLAB_CACHE to a "
                        "writable folder with room, or use a smaller --image-size")
    return writer, None


def _check_resize_fits(n: int, channels: int, size: int | None, where: str) -> None:
    """Refuse a resize whose result cannot fit in memory, before allocating it."""
    if size is None:
        return
    need = n * channels * size * size
    avail = cache.available_memory()
    if avail is not None and need > avail * 0.8:
        raise DataError(f"{where}: {n} images resized to {channels}x{size}x{size} need "
                        f"{cache.human_bytes(need)}, more than the memory available "
                        f"({cache.human_bytes(avail)}); use a smaller --image-size")


def _from_parts(parts: dict[str, tuple[np.ndarray, np.ndarray | None]], names: list[str] | None,
                where: str, ids_prefix: dict[str, str] | None = None,
                files: dict[str, tuple[Path, Path | None]] | None = None,
                value_range: tuple[float, float] | None = None,
                unlabeled_value: int | None = None) -> ImageSet:
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
        y8 = to_labels(y, x8.shape[0], label_where[-1], unlabeled_value)
        images.append(x8)
        labels.append(y8)
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


def _folder_set(path: Path, opts: LoadOptions, progress: Progress,
                listing: FolderListing | None = None) -> ImageSet:
    """Decode an image file or a folder tree (`listing`: how the tree was read, else by layout)."""
    data_notes: list[str] = []
    if path.is_file():
        files, parts, classes, labels = [path], [""], [], [-1]
        ids, notes = [path.name], None
    else:
        listing = listing or read_folder(path, opts.layout)
        files, parts, classes, labels = (listing.files, listing.parts, listing.classes,
                                         listing.labels)
        if listing.skipped_links:
            shown = ", ".join(listing.skipped_links[:5])
            data_notes.append(f"{path}: skipped {len(listing.skipped_links)} folder "
                              f"symlink(s) pointing back into the data folder ({shown})")
        ids = ids_for(files, path)
        notes = {"layout_note": listing.note} if listing.note else None
    return _decode_files(files, parts, classes, labels, ids, opts,
                         {"fmt": "folder", "root": str(path.resolve()), "layout": opts.layout},
                         progress, {**(notes or {}), **({"data_notes": data_notes} if data_notes
                                                        else {})} or None)


def read_to_predict(path: Path | None, opts: LoadOptions, classes: list[str],
                    progress: Progress = None) -> ImageSet:
    """Images to predict on, which need no labels.

    A folder that is not a tree of class folders (one sub-folder, empty ones, loose images
    beside them, ...) is read whole, every image unlabeled. Labels are kept only when the
    source's classes are `classes` (the model's); otherwise they are unknown (-1) and
    meta["predict_note"] says why."""
    path = Path(path).expanduser() if path is not None else None
    note = None
    if path is not None and path.is_dir() and (opts.format == "folder" or (
            opts.format == "auto" and detect_format(path) == "folder")):
        try:
            listing = read_folder(path, opts.layout)
        except DataError as exc:  # no class folders to read labels from: every image
            listing = read_all_images(path)
            why = str(exc).removeprefix(f"{path}: ")
            note = f"read every image under it, unlabeled ({why})"
        data = _folder_set(path, opts, progress, listing)
        data.meta.update(name=path.name, format="folder", path=str(path))
    else:
        data = read_source(path, opts, progress)
    if data.classes and list(data.classes) != list(classes) and (data.labels >= 0).any():
        note = (f"its classes ({name_list(data.classes)}) are not the model's "
                f"({name_list(classes)}): labels unknown (-1)")
        data.labels = torch.full_like(data.labels, -1)
        data.classes = list(classes)
    if note:
        data.meta["predict_note"] = f"{data.meta.get('path') or path}: {note}"
    return data


def read_source(path: Path | None, opts: LoadOptions, progress: Progress = None) -> ImageSet:
    """Read a source into one ImageSet whose `partition` marks train/val/test items."""
    fmt = opts.format
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if path is None or fmt == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
        data = _from_parts({"": (x, d.target)}, [str(i) for i in range(10)], "digits")
        data.meta["name"] = "digits"
        data.meta["format"] = "digits"
        if opts.image_size or opts.channels:  # built-in digits honour --image-size too
            size = (opts.image_size, opts.image_size) if opts.image_size else None
            _check_resize_fits(len(data), opts.channels or 1, opts.image_size, "digits")
            data.images = adjust(data.images.numpy(), size, opts.channels)
        return data
    path = Path(path).expanduser()
    if fmt == "auto":
        fmt = detect_format(path)
    elif not path.exists():
        raise DataError(f"{path}: no such file or folder")
    name = path.stem if path.is_file() else path.name
    if fmt == "folder":
        data = _folder_set(path, opts, progress)
    elif fmt == "csv":
        csv_path = path if path.is_file() else _single_csv(path)
        image_dir = Path(opts.image_dir).expanduser() if opts.image_dir else None
        files, parts, classes, labels, ids, notes = read_csv_index(
            csv_path, image_dir, opts.columns, opts.task, tuple(opts.skip_partitions))
        data = _decode_files(files, parts, classes, labels, ids, opts,
                             {"fmt": "csv", "csv": str(csv_path.resolve()), "task": opts.task,
                              "cols": vars(opts.columns)}, progress, notes)
        name = csv_path.stem + (f"-{opts.task}" if opts.task else "")
    elif fmt == "npy":
        if path.suffix == ".npz":
            data = _from_parts(arrays.read_npz(path), None, str(path),
                              value_range=opts.value_range,
                              unlabeled_value=opts.unlabeled_value)
        else:
            layout = arrays.find_npy_layout(path)
            loaded = {p: (arrays.load_npy(x), arrays.load_npy(y) if y else None)
                      for p, (x, y) in layout.items()}
            data = _from_parts(loaded, None, str(path), files=layout,
                              value_range=opts.value_range,
                              unlabeled_value=opts.unlabeled_value)
            name = layout["train"][0].name[: -len("_images.npy")] if "train" in layout else name
    elif fmt == "cifar":
        parts_c, names = cifar.read_cifar(path)
        data = _from_parts(parts_c, names or None, str(path), value_range=opts.value_range,
                              unlabeled_value=opts.unlabeled_value)
    elif fmt == "idx":
        pairs = idx.find_idx_pairs(path)
        loaded = {p: (idx.read_idx(x), idx.read_idx(y) if y else None)
                  for p, (x, y) in pairs.items()}
        data = _from_parts(loaded, None, str(path), files=pairs, value_range=opts.value_range,
                              unlabeled_value=opts.unlabeled_value)
    else:
        raise DataError(f"unknown format {fmt!r}")
    if fmt in ("npy", "cifar", "idx"):
        size = (opts.image_size, opts.image_size) if opts.image_size else None
        _check_resize_fits(len(data), opts.channels or data.images.shape[1], opts.image_size,
                           str(path))
        data.images = adjust(data.images.numpy(), size, opts.channels)
        if opts.crop_size:
            data.images = center_crop_images(data.images, opts.crop_size)
    data.meta.setdefault("name", name)
    data.meta["format"] = fmt
    data.meta["path"] = str(path)
    return data


def _single_csv(folder: Path) -> Path:
    csvs = sorted(folder.glob("*.csv"))
    if len(csvs) != 1:
        raise DataError(f"{folder}: expected one .csv index, found {len(csvs)}; pass the file")
    return csvs[0]


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
