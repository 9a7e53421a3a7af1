"""CSV index of image files (EECS 445: filename,semantic_label,partition,numeric_label,task)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from cnnlab.csvsafe import unescape_cell
from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import CsvColumns, LoadOptions, Progress
from cnnlab.data.sources.common import check_class_count, empty_class_note
from cnnlab.data.sources.decoded import decode_files
from cnnlab.data.sources.folder import PARTITION_ALIASES
from cnnlab.data.sources.source import IndexRow, IndexRows, Source
from cnnlab.errors import DataError


def safe_join(root: Path, rel: str, where: str) -> Path:
    """root/rel, refusing absolute paths and paths that escape root."""
    if not rel:
        raise DataError(f"{where}: empty file name")
    if "\x00" in rel:
        raise DataError(f"{where}: file name {rel!r} contains a NUL byte")
    p = Path(rel)
    if p.is_absolute() or rel.startswith(("/", "\\")) or (p.parts and ":" in p.parts[0]):
        raise DataError(f"{where}: absolute path {rel!r} is not allowed (paths are relative "
                        f"to {root})")
    full = (root / p).resolve()
    try:
        full.relative_to(root.resolve())
    except ValueError:
        raise DataError(f"{where}: path {rel!r} escapes the data root {root}") from None
    return full


def _read_rows(csv_path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line number, row)]): cells cnnlab neutralised for spreadsheets restored."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [unescape_cell(h) for h in reader.fieldnames or [] if h is not None]
            rows = []
            for r in reader:
                rows.append((reader.line_num, {unescape_cell(k) if isinstance(k, str) else k:
                                               unescape_cell(v) if isinstance(v, str) else v
                                               for k, v in r.items()}))
    except UnicodeDecodeError:
        raise DataError(f"{csv_path}: not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{csv_path}: malformed CSV ({exc})") from None
    return header, rows


def parse_label(text: str, where: str) -> int:
    """A numeric_label cell as a class index: whole, finite and not negative."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: label {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: label {text!r} is not a finite number")
    if value != int(value):
        raise DataError(f"{where}: label {text!r} is not a whole number (labels are class "
                        "indices 0, 1, ...)")
    k = int(value)
    if k < 0:
        raise DataError(f"{where}: negative label {k}")
    return k


def _cell(row: dict, col: str) -> str:
    return (row.get(col) or "").strip()


def _numeric_classes(csv_path: Path, rows: list[tuple[int, dict]], cols: CsvColumns,
                     has_name: bool) -> tuple[list[str], list[int], int]:
    """(class names, label per row, offset) from numeric labels, names checked one-to-one."""
    name_of: dict[int, tuple[str, int]] = {}
    num_of: dict[str, tuple[int, int]] = {}
    nums: list[int | None] = []
    for line, r in rows:
        where = f"{csv_path}:{line}"
        num, name = _cell(r, cols.numeric), _cell(r, cols.label) if has_name else ""
        if not num:
            if name:  # a named row without its number would silently become unlabeled
                raise DataError(f"{where}: {cols.label} {name!r} but {cols.numeric} is empty; "
                                "give both (or neither, for an unlabeled image)")
            nums.append(None)
            continue
        k = parse_label(num, where)
        nums.append(k)
        if not name:
            continue
        if name_of.setdefault(k, (name, line))[0] != name:
            raise DataError(f"{where}: label {k} named both {name_of[k][0]!r} (line "
                            f"{name_of[k][1]}) and {name!r}")
        if num_of.setdefault(name, (k, line))[0] != k:
            raise DataError(f"{where}: class {name!r} has two numeric labels, "
                            f"{num_of[name][0]} (line {num_of[name][1]}) and {k}; each class "
                            "needs one number")
    given = [k for k in nums if k is not None]
    if not given:
        return [], [-1] * len(rows), 0
    base, kmax = min(given), max(given)
    check_class_count(kmax - base + 1, len(given), f"{csv_path}:{rows[nums.index(kmax)][0]}",
                      kmax)
    classes = [name_of[k][0] if k in name_of else str(k) for k in range(base, kmax + 1)]
    if len(set(classes)) < len(classes):
        dup = next(c for c in classes if classes.count(c) > 1)
        raise DataError(f"{csv_path}: class name {dup!r} is used for two numeric labels (a "
                        "number without a name is named by the number itself)")
    return classes, [-1 if k is None else k - base for k in nums], base


def read_csv_index(csv_path: Path, image_dir: Path | None, cols: CsvColumns, task: str | None,
                   skip_partitions: tuple[str, ...] = ()
                   ) -> tuple[list[Path], list[str], list[str], list[int], list[str], dict]:
    """Parse and validate the index: (files, partitions, classes, labels, ids, notes).

    Every row is used or refused with its line number; rows of the partitions named in
    `skip_partitions` (e.g. a held-out "challenge" set) are skipped and counted.
    """
    root = _data_root(csv_path.parent, image_dir)
    header, rows = _read_rows(csv_path)
    if cols.path not in header:
        raise DataError(f"{csv_path}: missing column {cols.path!r} (columns: "
                        f"{', '.join(header) or 'none'}; set another with --path-column)")
    has_num = cols.numeric in header
    has_name = cols.label in header
    if not has_num and not has_name:
        raise DataError(f"{csv_path}: missing label column {cols.label!r} or {cols.numeric!r} "
                        "(set one with --label-column)")
    notes: dict = {}
    tasks = sorted({r.get(cols.task) or "" for _, r in rows})
    if task is not None:
        if cols.task not in header:
            raise DataError(f"{csv_path}: --task given but the CSV has no {cols.task!r} column")
        rows = [(i, r) for i, r in rows if r.get(cols.task) == task]
        if not rows:
            raise DataError(f"{csv_path}: no rows for task {task!r} (tasks: {', '.join(tasks)})")
    elif cols.task in header and len(tasks) > 1:
        raise DataError(f"{csv_path}: rows belong to several tasks ({', '.join(tasks)}); "
                        "choose one with --task")
    if not rows:
        raise DataError(f"{csv_path}: no rows")

    # Partitions first: a misspelt one ("trian") must be refused, not dropped.
    has_part = cols.partition in header
    skip = {p.strip().lower() for p in skip_partitions}
    kept_rows, skipped_parts = [], {}
    for i, r in rows:
        part_raw = _cell(r, cols.partition).lower() if has_part else ""
        if part_raw in skip:
            skipped_parts[part_raw] = skipped_parts.get(part_raw, 0) + 1
            continue
        if part_raw and part_raw not in PARTITION_ALIASES:
            raise DataError(f"{csv_path}:{i}: unknown {cols.partition} {part_raw!r} (allowed: "
                            f"{', '.join(PARTITION_ALIASES)} or empty)")
        kept_rows.append((i, r))
    if not kept_rows:
        raise DataError(f"{csv_path}: no usable rows (all {len(rows)} are in skipped partitions)")

    # Class names and numbers: numeric labels are authoritative when present.
    if has_num and any(_cell(r, cols.numeric) for _, r in kept_rows):
        classes, label_of_row, base = _numeric_classes(csv_path, kept_rows, cols, has_name)
        notes["label_offset"] = base
    else:
        classes = sorted({_cell(r, cols.label) for _, r in kept_rows} - {""})
        index = {c: j for j, c in enumerate(classes)}
        label_of_row = [index.get(_cell(r, cols.label), -1) for _, r in kept_rows]

    files, parts, labels, ids = [], [], [], []
    seen: dict[tuple[str, str], int] = {}
    duplicates = 0
    for (i, r), lab in zip(kept_rows, label_of_row, strict=True):
        rel = _cell(r, cols.path)
        part_raw = _cell(r, cols.partition).lower() if has_part else ""
        part = PARTITION_ALIASES.get(part_raw, "")
        key = (rel, part)
        if key in seen:
            if labels[seen[key]] != lab:
                raise DataError(f"{csv_path}:{i}: {rel!r} listed twice with different labels")
            duplicates += 1
            continue
        full = safe_join(root, rel, f"{csv_path}:{i}")
        if not full.is_file():
            raise DataError(f"{csv_path}:{i}: file {rel!r} not found under {root}")
        seen[key] = len(files)
        files.append(full)
        parts.append(part)
        labels.append(lab)
        ids.append(rel)
    notes["rows_used"] = len(files)
    said = [f"{csv_path.name}: {len(files)} of {len(rows)} rows used"]
    if duplicates:
        notes["duplicate_rows_dropped"] = duplicates
        said.append(f"{duplicates} duplicate row(s) dropped")
    if skipped_parts:
        notes["rows_in_other_partitions"] = skipped_parts
        said.append("skipped partitions " + ", ".join(f"{k} ({v})" for k, v in
                                                      sorted(skipped_parts.items())))
    unlabeled = sum(1 for v in labels if v < 0)
    if unlabeled:
        said.append(f"{unlabeled} without a label (unlabeled, not trained on)")
    data_notes = ["; ".join(said)]
    if classes:
        counts = np.bincount([v for v in labels if v >= 0], minlength=len(classes))
        if (note := empty_class_note(counts, classes, str(csv_path))) is not None:
            data_notes.append(note)
    notes["data_notes"] = data_notes
    if not files:
        raise DataError(f"{csv_path}: no usable rows")
    return files, parts, classes, labels, ids, notes


def single_csv(folder: Path) -> Path:
    """The one .csv index in `folder`."""
    csvs = sorted(folder.glob("*.csv"))
    if len(csvs) != 1:
        raise DataError(f"{folder}: expected one .csv index, found {len(csvs)}; pass the file")
    return csvs[0]


def _detect(path: Path) -> bool:
    if path.is_file():
        return path.name.lower().endswith(".csv")
    if len(list(path.glob("*.csv"))) != 1:
        return False
    # a CSV beside the images it lists, or beside an images/ folder
    return (path / "images").is_dir() or not any(
        p.is_dir() and not p.name.startswith(".") and p.name != "images" for p in path.iterdir())


def _image_dir(opts: LoadOptions) -> Path | None:
    return Path(opts.image_dir).expanduser() if opts.image_dir else None


def _data_root(csv_dir: Path, image_dir: Path | None) -> Path:
    """What the index's file names are relative to: image_dir, else images/ beside the CSV."""
    if image_dir is not None:
        return image_dir
    return csv_dir / "images" if (csv_dir / "images").is_dir() else csv_dir


def _read(path: Path, opts: LoadOptions, progress: Progress) -> ImageSet:
    csv_path = path if path.is_file() else single_csv(path)
    files, parts, classes, labels, ids, notes = read_csv_index(
        csv_path, _image_dir(opts), opts.columns, opts.task, tuple(opts.skip_partitions))
    data = decode_files(files, parts, classes, labels, ids, opts,
                        {"fmt": "csv", "csv": str(csv_path.resolve()), "task": opts.task,
                         "cols": vars(opts.columns)}, progress, notes)
    data.meta.setdefault("name", csv_path.stem + (f"-{opts.task}" if opts.task else ""))
    return data


def _files(path: Path, opts: LoadOptions) -> list[Path]:
    csv_path = path if path.is_file() else single_csv(path)
    return read_csv_index(csv_path, _image_dir(opts), opts.columns, opts.task,
                          tuple(opts.skip_partitions))[0]


def _root(path: Path, image_dir: str | None) -> Path:
    return _data_root(path.parent if path.is_file() else path,
                      Path(image_dir).expanduser() if image_dir else None)


def _rows(path: Path, opts: LoadOptions) -> IndexRows:
    """Every row of the index (of `opts.task`), its own columns kept."""
    csv_path = path if path.is_file() else single_csv(path)
    cols, task = opts.columns, opts.task
    root = _data_root(csv_path.parent, _image_dir(opts))
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: not a readable CSV index ({exc})") from None
    if cols.path not in header:
        raise DataError(f"{csv_path}: missing column {cols.path!r}")
    items = []
    for i, r in enumerate(rows, start=2):
        if task is not None and r.get(cols.task) != task:
            continue
        rel = (r.get(cols.path) or "").strip()
        src = safe_join(root, rel, f"{csv_path}:{i}")
        if not src.is_file():
            raise DataError(f"{csv_path}:{i}: file {rel!r} not found under {root}")
        raw = (r.get(cols.partition) or "").strip().lower()
        row = dict(r)
        row[cols.partition] = PARTITION_ALIASES.get(raw, raw)
        label = (r.get(cols.label) or r.get(cols.numeric) or "").strip()
        items.append(IndexRow(src, rel, row, f"{r.get(cols.task, '')}/{label}"))
    if not items:
        raise DataError(f"{csv_path}: no rows" + (f" for task {task!r}" if task else ""))
    extra = [h for h in header if h not in (cols.path, cols.label, cols.partition, cols.numeric,
                                            cols.task)]
    return IndexRows(csv_path.stem, items,
                     [cols.path, cols.label, cols.partition, cols.numeric, cols.task] + extra,
                     cols.path, cols.partition)


SOURCE = Source("csv", _read, _detect, priority=40, files=_files, root=_root, rows=_rows)
