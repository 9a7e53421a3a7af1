"""--fix: a cleaned index that `cnnlab train` reads: leaks and repeated copies out, labels kept.

Flagged labels are never changed: they get a `doctor_review` note and the suggested class in
their own column, for a person to decide. Removed rows go to doctor-removed.csv with the reason.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from cnnlab.doctor.pool import Pool
from cnnlab.errors import DataError
from cnnlab.io import atomic_write_bytes, write_csv

CLEAN_CSV = "doctor-clean.csv"
CLEAN_NPZ = "doctor-clean.npz"
REMOVED_CSV = "doctor-removed.csv"
REVIEW_CSV = "doctor-review.csv"
REMOVED_COLUMNS = ("filename", "semantic_label", "numeric_label", "partition", "doctor_review",
                   "doctor_suggested_label", "reason")


def removals(pool: Pool, groups: list[dict], leaks: list[dict]) -> dict[int, str]:
    """{pool index: reason} of the items the cleaned index leaves out."""
    out: dict[int, str] = {}
    for leak in leaks:
        for t in leak["train_indices"]:
            out.setdefault(t, f"leak: {'copy' if leak['exact'] else 'near copy'} of "
                              f"{leak['split']} item {leak['id']}")
    for g in groups:
        if g["kind"] != "exact":
            continue
        # Pixel-identical copies inside one split add nothing: keep the first of each split.
        seen: set[str] = set()
        for m in g["members"]:
            split = str(pool.split_names[m])
            if split in seen and m not in out:
                out[m] = f"exact duplicate within {split}"
            seen.add(split)
    return out


def write_fix(pool: Pool, out_dir: Path, groups: list[dict], leaks: list[dict],
              issues: list[dict]) -> dict:
    """Write the cleaned CSV (file sources) or .npz (arrays); return what was written."""
    drop = removals(pool, groups, leaks)
    review = {r["index"]: r for r in issues}
    if pool.root is not None and all(p is not None for p in pool.paths):
        return _write_csv(pool, out_dir, drop, review)
    return _write_npz(pool, out_dir, drop, review)


def _review_cols(pool: Pool, i: int, review: dict[int, dict]) -> dict:
    r = review.get(i)
    if r is None:
        return {"doctor_review": "", "doctor_suggested_label": ""}
    return {"doctor_review": f"label? given {pool.classes[r['given']]}, model suggests "
                             f"{pool.classes[r['suggested']]} (p={r['p_suggested']:.2f})",
            "doctor_suggested_label": pool.classes[r["suggested"]]}


def _write_csv(pool: Pool, out_dir: Path, drop: dict[int, str], review: dict[int, dict]) -> dict:
    root = pool.root.resolve()
    rows, removed = [], []
    for i, p in enumerate(pool.paths):
        try:
            rel = Path(os.path.relpath(Path(p).resolve(), root)).as_posix()
        except ValueError:
            rel = ""
        if not rel or rel.startswith("../"):
            raise DataError(f"{p}: outside the data root {root}; --fix cannot index it")
        lab = int(pool.labels[i])
        row = {"filename": rel, "semantic_label": pool.classes[lab] if lab >= 0 else "",
               "numeric_label": lab if lab >= 0 else "",
               "partition": str(pool.split_names[i]), **_review_cols(pool, i, review)}
        if i in drop:
            removed.append({**row, "reason": drop[i]})
        else:
            rows.append(row)
    csv_path = out_dir / CLEAN_CSV
    write_csv(csv_path, rows)
    write_csv(out_dir / REMOVED_CSV, removed, REMOVED_COLUMNS)  # the header even when empty
    return {"kind": "csv", "path": str(csv_path), "image_dir": str(root),
            "removed": len(removed), "kept": len(rows), "flagged_for_review": len(review),
            "removed_list": str(out_dir / REMOVED_CSV),
            "train_command": f"cnnlab train {csv_path} --image-dir {root}"
            if (pool.labels >= 0).any() else "(unlabeled data: nothing to train on)"}


def _write_npz(pool: Pool, out_dir: Path, drop: dict[int, str], review: dict[int, dict]) -> dict:
    arrays: dict[str, np.ndarray] = {}
    for name in pool.sets:
        keep = [i for i in pool.where(name) if i not in drop]
        arrays[f"x_{name}"] = np.stack([pool.image(i) for i in keep]) if keep else \
            np.zeros((0, *pool.image(int(pool.where(name)[0])).shape), np.uint8)
        labels = pool.labels[keep]
        if len(labels) and (labels >= 0).all():
            arrays[f"y_{name}"] = labels.astype(np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    npz = out_dir / CLEAN_NPZ
    atomic_write_bytes(npz, buf.getvalue())
    rows = [{"split": str(pool.split_names[i]), "id": pool.ids[i],
             "label": pool.classes[int(pool.labels[i])] if pool.labels[i] >= 0 else "",
             "action": "removed" if i in drop else "review", "reason": drop.get(i, ""),
             **_review_cols(pool, i, review)}
            for i in sorted(set(drop) | set(review))]
    write_csv(out_dir / REVIEW_CSV, rows)
    return {"kind": "npz", "path": str(npz), "removed": len(drop),
            "kept": len(pool) - len(drop), "flagged_for_review": len(review),
            "removed_list": str(out_dir / REVIEW_CSV),
            "note": "array sources have no files to index: the cleaned arrays are in the .npz "
                    "(class names become 0..K-1)",
            "train_command": f"cnnlab train {npz}"}
