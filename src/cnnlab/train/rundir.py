"""A run is a folder: config.yaml, metrics.csv, metrics.json, checkpoints, plots, report.

Its manifest, `.cnnlab-run`, claims the folder (created exclusively, so two runs started
together never share one) and lists every file the run wrote: `--force` removes exactly those
and never a file of the user's, and a folder without a manifest is never cleared.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from cnnlab import io
from cnnlab.errors import CnnlabError
from cnnlab.io import remove_stale_temps


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"


MANIFEST = ".cnnlab-run"
# What a killed run may have written after its manifest was last updated (the manifest is
# updated when the settings are written and when the run ends, even by an error or Ctrl-C).
UNRECORDED = ("config.yaml", "metrics.csv", "metrics.json", "steps.csv", "predictions.csv",
              "report.html", "last.pt", "best.pt", "epoch_*.pt", "plots/*.png", "mlflow.json",
              "events.out.tfevents.*")
# File times come from the kernel's coarse clock, up to a tick behind time.time().
MTIME_SLACK = 0.05


def read_manifest(folder: Path) -> list[str] | None:
    """The files a run folder's manifest lists; None when `folder` is no cnnlab run folder."""
    path = folder / MANIFEST
    if path.is_symlink() or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        doc = {}  # a claim written before manifests listed files (it held a process id)
    files = doc.get("files") if isinstance(doc, dict) else None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def is_run(folder: Path) -> bool:
    """True when `folder` is a cnnlab run folder (it has a manifest)."""
    return read_manifest(folder) is not None


def _write_manifest(folder: Path, files: list[str]) -> None:
    io.write_json(folder / MANIFEST, {"cnnlab_run": 1, "files": sorted(set(files))})


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _claim(folder: Path) -> bool:
    """Atomically make `folder` ours: True for exactly one of several racing processes."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / MANIFEST, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except (FileExistsError, NotADirectoryError):
        return False  # another run's manifest, or a file where the folder would be
    with os.fdopen(fd, "w") as fh:
        json.dump({"cnnlab_run": 1, "files": []}, fh)
    return True


def adopt(folder: Path) -> None:
    """Give a run folder being resumed a manifest if it has none (one written by an older
    cnnlab), so what the resumed run writes is recorded."""
    _claim(folder)


def _claim_free(base: Path) -> Path:
    """The first of base, base-2, base-3 ... that holds nothing, claimed exclusively."""
    i = 1
    while True:
        cand = base if i == 1 else base.with_name(f"{base.name}-{i}")
        if not _has_files(cand) and not cand.is_file() and _claim(cand):
            return cand
        i += 1


def release_if_unused(folder: Path) -> bool:
    """Remove a folder this process claimed when nothing but the claim was written into it."""
    try:
        if {p.name for p in folder.iterdir()} <= {MANIFEST}:
            (folder / MANIFEST).unlink(missing_ok=True)
            folder.rmdir()
            return True
    except OSError:
        pass
    return False


def _written_files(folder: Path) -> list[Path]:
    """Regular files under `folder` (symlinked folders not followed), less the manifest and
    temp files of writes in progress."""
    out = []
    for dirpath, _, names in os.walk(folder):
        for name in names:
            p = Path(dirpath) / name
            if name == MANIFEST or (name.startswith(".") and name.endswith(io.TEMP_SUFFIX)):
                continue
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return out


def record_outputs(folder: Path, since: float) -> None:
    """Add to the manifest the files written into `folder` since `since` (time.time()).

    Only files changed since this process took the folder are added: a file the user put into
    a finished run folder is not the run's, even when the run is resumed later.
    """
    listed = read_manifest(folder)
    if listed is None:
        return
    found = set(listed)
    for p in _written_files(folder):
        if p.lstat().st_mtime >= since - MTIME_SLACK:
            found.add(p.relative_to(folder).as_posix())
    if found != set(listed):
        _write_manifest(folder, sorted(found))


def _inside(folder: Path, rel: str) -> Path | None:
    """folder/rel when it names a file inside `folder` (a hostile manifest cannot reach out)."""
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    path = folder / rel
    try:
        path.parent.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return None  # through a symlinked folder
    return path


def clear_run_outputs(run_dir: Path) -> list[str]:
    """Remove the files `run_dir`'s manifest lists (and those a killed run may not have
    recorded: UNRECORDED) and nothing else; a folder without a manifest is left alone."""
    listed = read_manifest(run_dir)
    if listed is None:
        return []
    names = set(listed)
    for pattern in UNRECORDED:
        names.update(p.relative_to(run_dir).as_posix() for p in run_dir.glob(pattern))
    removed: list[str] = []
    for rel in sorted(names):
        path = _inside(run_dir, rel)
        if path is not None and (path.is_file() or path.is_symlink()):
            path.unlink()
            removed.append(rel)
    remove_stale_temps(run_dir)
    subdirs = {parent for rel in removed for parent in Path(rel).parents if parent != Path(".")}
    for sub in sorted(subdirs, key=lambda p: len(p.parts), reverse=True):
        try:
            (run_dir / sub).rmdir()  # only when nothing of the user's is left in it
        except OSError:
            pass
    _write_manifest(run_dir, [])
    return removed


def _replace(target: Path) -> Path:
    """--force: clear the run in `target` for a new one; refused unless it is a cnnlab run."""
    if not is_run(target):
        raise CnnlabError(f"--force {target}: not a cnnlab run folder (no {MANIFEST} manifest), "
                          "so nothing in it is removed; choose another --out")
    clear_run_outputs(target)
    return target


def _taken(target: Path) -> CnnlabError:
    if is_run(target):
        return CnnlabError(f"--out {target}: already holds a run; continue it with --resume, "
                           "start it again with --force, or choose another --out")
    return CnnlabError(f"--out {target}: the folder holds other files and no cnnlab run; "
                       "choose a new or empty folder")


def choose_run_dir(out: str | None, runs_dir: str, base_name: str, resume: bool,
                   force: bool = False) -> Path:
    """Pick and claim the run folder; an existing run is never overwritten unless `force`.

    An explicit `out` that holds anything is refused (racing processes: one claims it, the
    others are refused); an auto-named one moves on to NAME-2, NAME-3, ... With `force` an
    existing run's own files (its manifest's) are removed first.
    """
    if out:
        target = Path(out).expanduser()
        if resume:
            if not (target / "last.pt").is_file():
                raise CnnlabError(f"{target}: nothing to resume (no last.pt)")
            remove_stale_temps(target)
            return target
        if target.exists() and not target.is_dir():
            raise CnnlabError(f"--out {target}: is a file, not a folder")
        if force and _has_files(target):
            return _replace(target)
        if not _has_files(target) and _claim(target):
            return target
        raise _taken(target)
    target = Path(runs_dir) / _slug(base_name)
    if resume:
        candidates = [p for p in [target, *target.parent.glob(target.name + "-*")]
                      if (p / "last.pt").is_file()]
        if not candidates:
            raise CnnlabError(f"no run to resume under {target} (pass --out RUN_DIR)")
        found = max(candidates, key=lambda p: (p / "last.pt").stat().st_mtime)
        remove_stale_temps(found)
        return found
    if force and _has_files(target):
        return _replace(target)
    return _claim_free(target)
