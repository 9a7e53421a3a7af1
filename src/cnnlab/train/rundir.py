"""A run is a folder: config.yaml, metrics.csv, metrics.json, checkpoints, plots, report."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import yaml

from cnnlab.checkpoint import TEMP_SUFFIX, atomic_write_bytes
from cnnlab.csvsafe import safe_cell, unescape_cell
from cnnlab.errors import CnnlabError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


def _has_run(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def choose_run_dir(out: str | None, runs_dir: str, base_name: str, resume: bool,
                   force: bool = False) -> Path:
    """Pick the run folder: never overwrite an existing run unless `force` (a suffix is added)."""
    if out:
        target = Path(out).expanduser()
        if resume:
            if not (target / "last.pt").is_file():
                raise CnnlabError(f"{target}: nothing to resume (no last.pt)")
            remove_stale_temps(target)
            return target
        if not _has_run(target) or force:
            return target
        return _next_free(target)
    base = Path(runs_dir) / _slug(base_name)
    if resume:
        candidates = [p for p in [base, *base.parent.glob(base.name + "-*")]
                      if (p / "last.pt").is_file()]
        if not candidates:
            raise CnnlabError(f"no run to resume under {base} (pass --out RUN_DIR)")
        found = max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
        remove_stale_temps(found)
        return found
    if not _has_run(base) or force:
        return base
    return _next_free(base)


def _next_free(base: Path) -> Path:
    i = 2
    while _has_run(base.with_name(f"{base.name}-{i}")):
        i += 1
    return base.with_name(f"{base.name}-{i}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically (undecodable file names are written escaped)."""
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def remove_stale_temps(run_dir: Path) -> int:
    """Delete temp files a killed process left behind (`.NAME.XXXX.tmp`); returns the count."""
    removed = 0
    for p in list(run_dir.glob(f".*{TEMP_SUFFIX}")) + list(run_dir.glob("plots/.*.tmp.png")):
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def write_yaml(path: Path, data: dict) -> None:
    """Write YAML atomically."""
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))


def write_json(path: Path, data: dict) -> None:
    """Write JSON atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write rows (dicts with the same keys) as CSV atomically."""
    buf = io.StringIO()
    if rows:
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        # Cells are neutralised so no name (class, file) runs as a spreadsheet formula.
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([safe_cell(k) for k in keys])
        for r in rows:
            w.writerow([safe_cell(_fmt(r.get(k))) for k in keys])
    write_text_atomic(path, buf.getvalue())


def _fmt(v: object) -> object:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def read_csv(path: Path) -> list[dict]:
    """Rows of a CSV written by write_csv, numbers parsed back."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            k, v = unescape_cell(k), unescape_cell(v) if v else v
            try:
                d[k] = int(v) if re.fullmatch(r"-?\d+", v or "") else float(v) if v else None
            except ValueError:
                d[k] = v
        out.append(d)
    return out
