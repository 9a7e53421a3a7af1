"""CSV index of image files (EECS 445: filename,semantic_label,partition,numeric_label,task)."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from cnnlab.data.sources.folder import PARTITION_ALIASES
from cnnlab.errors import DataError


@dataclass
class CsvColumns:
    """Column names of a CSV index; the defaults are the EECS 445 layout."""

    path: str = "filename"
    label: str = "semantic_label"
    numeric: str = "numeric_label"
    partition: str = "partition"
    task: str = "task"


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


def read_csv_index(csv_path: Path, image_dir: Path | None, cols: CsvColumns, task: str | None
                   ) -> tuple[list[Path], list[str], list[str], list[int], list[str], dict]:
    """Parse and validate the index: (files, partitions, classes, labels, ids, notes)."""
    root = image_dir if image_dir is not None else csv_path.parent
    if image_dir is None and (csv_path.parent / "images").is_dir():
        root = csv_path.parent / "images"
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            rows = list(reader)
    except UnicodeDecodeError:
        raise DataError(f"{csv_path}: not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise DataError(f"{csv_path}: malformed CSV ({exc})") from None
    if cols.path not in header:
        raise DataError(f"{csv_path}: missing column {cols.path!r} (columns: "
                        f"{', '.join(header) or 'none'}; set another with --path-column)")
    has_num = cols.numeric in header
    has_name = cols.label in header
    if not has_num and not has_name:
        raise DataError(f"{csv_path}: missing label column {cols.label!r} or {cols.numeric!r} "
                        "(set one with --label-column)")
    notes: dict = {}
    if task is not None:
        if cols.task not in header:
            raise DataError(f"{csv_path}: --task given but the CSV has no {cols.task!r} column")
        tasks = sorted({r.get(cols.task) or "" for r in rows})
        rows = [r for r in rows if r.get(cols.task) == task]
        if not rows:
            raise DataError(f"{csv_path}: no rows for task {task!r} (tasks: {', '.join(tasks)})")
    elif cols.task in header and len({r.get(cols.task) or "" for r in rows}) > 1:
        tasks = sorted({r.get(cols.task) or "" for r in rows})
        raise DataError(f"{csv_path}: rows belong to several tasks ({', '.join(tasks)}); "
                        "choose one with --task")
    if not rows:
        raise DataError(f"{csv_path}: no rows")

    # Class names and numbers: numeric labels are authoritative when present.
    name_of: dict[int, str] = {}
    for i, r in enumerate(rows, start=2):
        num = (r.get(cols.numeric) or "").strip() if has_num else ""
        name = (r.get(cols.label) or "").strip() if has_name else ""
        if has_num and num:
            try:
                k = int(float(num))
            except ValueError:
                raise DataError(f"{csv_path}:{i}: label {num!r} is not a number") from None
            if k < 0:
                raise DataError(f"{csv_path}:{i}: negative label {k}")
            if name and name_of.setdefault(k, name) != name:
                raise DataError(f"{csv_path}:{i}: label {k} named both {name_of[k]!r} and "
                                f"{name!r}")
    if has_num and name_of or has_num and not has_name:
        nums = sorted({int(float(r[cols.numeric])) for r in rows if (r.get(cols.numeric) or
                                                                      "").strip()})
        kmax = max(nums) if nums else -1
        base = min(nums) if nums else 0
        classes = [name_of.get(k, str(k)) for k in range(base, kmax + 1)]
        label_of_row = [int(float(r[cols.numeric])) - base if (r.get(cols.numeric) or "").strip()
                        else -1 for r in rows]
        notes["label_offset"] = base
    else:
        classes = sorted({(r.get(cols.label) or "").strip() for r in rows} - {""})
        index = {c: j for j, c in enumerate(classes)}
        label_of_row = [index.get((r.get(cols.label) or "").strip(), -1) for r in rows]

    files, parts, labels, ids = [], [], [], []
    seen: dict[tuple[str, str], int] = {}
    dropped_parts: dict[str, int] = {}
    duplicates = 0
    has_part = cols.partition in header
    for i, (r, lab) in enumerate(zip(rows, label_of_row, strict=True), start=2):
        rel = (r.get(cols.path) or "").strip()
        part_raw = (r.get(cols.partition) or "").strip().lower() if has_part else ""
        part = PARTITION_ALIASES.get(part_raw, "") if part_raw else ""
        if part_raw and not part:
            dropped_parts[part_raw] = dropped_parts.get(part_raw, 0) + 1
            continue
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
    if duplicates:
        notes["duplicate_rows_dropped"] = duplicates
    if dropped_parts:
        notes["rows_in_other_partitions"] = dropped_parts
    if not files:
        raise DataError(f"{csv_path}: no usable rows")
    return files, parts, classes, labels, ids, notes
