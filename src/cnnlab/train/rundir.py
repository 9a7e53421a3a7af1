"""A run is a folder: config.yaml, metrics.csv, metrics.json, checkpoints, plots, report."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path

import yaml

from cnnlab.checkpoint import TEMP_SUFFIX, atomic_write_bytes
from cnnlab.csvsafe import safe_cell, unescape_cell
from cnnlab.errors import CnnlabError


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


# An exclusive marker claims a run folder: two runs started together never share one.
CLAIM_FILE = ".cnnlab-run"
# What a run writes at its top level (plots/ holds only cnnlab's figures, *.png).
RUN_OUTPUTS = ("config.yaml", "metrics.csv", "metrics.json", "steps.csv", "predictions.csv",
               "report.html", "*.pt", "lr_find.*", "summary.csv", "summary.json")


def _has_run(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _claim(folder: Path) -> bool:
    """Atomically make `folder` ours: True for exactly one of several racing processes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / CLAIM_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False  # a file of that name, or another run's claim
    except NotADirectoryError:
        return False
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    return True


def _claim_free(base: Path) -> Path:
    """The first of base, base-2, base-3 ... that holds no run, claimed exclusively."""
    i = 1
    while True:
        cand = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not _has_run(cand) and not cand.is_file() and _claim(cand):
            return cand
        i += 1


def clear_run_outputs(run_dir: Path) -> list[str]:
    """Remove what cnnlab wrote into `run_dir` (checkpoints, metrics, plots, report) and
    nothing else, so a forced rerun never mixes its files with the previous run's."""
    removed: list[str] = []
    if not run_dir.is_dir():
        return removed
    for pattern in RUN_OUTPUTS:
        for p in run_dir.glob(pattern):
            if p.is_file() or p.is_symlink():
                p.unlink()
                removed.append(p.name)
    remove_stale_temps(run_dir)
    plots = run_dir / "plots"
    if plots.is_dir() and not plots.is_symlink():
        for p in plots.glob("*.png"):
            p.unlink()
            removed.append(f"plots/{p.name}")
        try:
            plots.rmdir()  # only when nothing of the user's is left in it
        except OSError:
            pass
    return removed


def choose_run_dir(out: str | None, runs_dir: str, base_name: str, resume: bool,
                   force: bool = False) -> Path:
    """Pick the run folder: never overwrite an existing run unless `force` (a suffix is added).

    A new folder is claimed atomically (see _claim), so two runs started at the same moment
    get two folders; with `force` an existing run's own outputs are removed first.
    """
    if out:
        target = Path(out).expanduser()
        if resume:
            if not (target / "last.pt").is_file():
                raise CnnlabError(f"{target}: nothing to resume (no last.pt)")
            remove_stale_temps(target)
            return target
        if force and target.is_dir():
            clear_run_outputs(target)
            return target
        return _claim_free(target)
    base = Path(runs_dir) / _slug(base_name)
    if resume:
        candidates = [p for p in [base, *base.parent.glob(base.name + "-*")]
                      if (p / "last.pt").is_file()]
        if not candidates:
            raise CnnlabError(f"no run to resume under {base} (pass --out RUN_DIR)")
        found = max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
        remove_stale_temps(found)
        return found
    if force and base.is_dir():
        clear_run_outputs(base)
        return base
    return _claim_free(base)


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
