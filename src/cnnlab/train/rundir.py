"""A run is a folder: config.yaml, metrics.csv, metrics.json, checkpoints, plots, report."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.io import remove_stale_temps


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


def release_if_unused(folder: Path) -> bool:
    """Remove a folder this process claimed when nothing but the claim was written into it."""
    try:
        if {p.name for p in folder.iterdir()} <= {CLAIM_FILE}:
            (folder / CLAIM_FILE).unlink(missing_ok=True)
            folder.rmdir()
            return True
    except OSError:
        pass
    return False


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
    else:
        target = Path(runs_dir) / _slug(base_name)
        if resume:
            candidates = [p for p in [target, *target.parent.glob(target.name + "-*")]
                          if (p / "last.pt").is_file()]
            if not candidates:
                raise CnnlabError(f"no run to resume under {target} (pass --out RUN_DIR)")
            found = max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
            remove_stale_temps(found)
            return found
    if force and target.is_dir():
        clear_run_outputs(target)
        return target
    return _claim_free(target)


