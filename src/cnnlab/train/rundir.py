"""A run is a folder: config.yaml, metrics.csv, metrics.json, checkpoints, plots, report."""

from __future__ import annotations

import re
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.io import remove_stale_temps


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


