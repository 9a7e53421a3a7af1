"""What every experiment shares: one folder, members trained by run_training, a summary table.

An experiment folder looks like this:

    <out>/experiment.yaml     kind, base settings and the experiment's own settings
    <out>/members/<name>/     one complete run folder per member (config, metrics, checkpoints)
    <out>/summary.csv         one row per member (and aggregate rows where they make sense)
    <out>/summary.json        the same, plus aggregates, the best member and notes
    <out>/curves.png          the members' learning curves overlaid
    <out>/experiment.html     all of it on one self-contained page, linking each member's
                              folder (and its report.html, where it wrote one)

A member is finished when its run folder has metrics.json; re-running the same command skips
finished members, resumes a member that has last.pt and restarts one that has neither.
"""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from cnnlab import io
from cnnlab.console import console, out
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.run import RunResult, load_splits, read_run, resolve_data, run_training
from cnnlab.settings import (
    SETTINGS,
    TrainConfig,
    check_combination,
    unknown_keys,
    with_recipe,
)
from cnnlab.train import rundir
from cnnlab.train.trainer import Interrupted

# Settings that change where or how fast a run goes, not what it learns: an experiment may be
# continued with other values of these.
NEUTRAL_KEYS = {n for n, s in SETTINGS.items() if not s.affects_result} | {"extra"}
# Columns taken from each member's metrics.json (split, metric).
METRICS = ("accuracy", "loss", "f1", "auroc")


class ExperimentInterrupted(Interrupted):
    """Ctrl-C during an experiment: finished members are kept, the current one can resume."""


@dataclass
class Member:
    """One training run of an experiment: a name, its settings and (once run) its results."""

    name: str
    cfg: TrainConfig
    splits: DataSplits
    labels: dict = field(default_factory=dict)  # the settings that distinguish it (for tables)
    run_dir: Path | None = None
    metrics: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    trained: bool = False  # False when it was already finished before this call


def experiment_dir(out: str | Path | None, runs_dir: str, kind: str, splits: DataSplits,
                   cfg: TrainConfig) -> Path:
    """The experiment folder: --out, else runs/<kind>-<data>-<model> (stable, so reruns resume)."""
    if out:
        return Path(out).expanduser()
    return Path(runs_dir) / rundir._slug(f"{kind}-{splits.source or 'data'}-{cfg.model}")


def prepare(base: TrainConfig, splits: DataSplits | None,
            verbose: bool = True) -> tuple[TrainConfig, DataSplits]:
    """Every experiment's start: a copy of the base settings with the data path resolved, and
    the data read and split once (or the splits given), before any folder is written."""
    cfg = deepcopy(base)
    resolve_data(cfg)
    return cfg, splits if splits is not None else load_splits(cfg, verbose)


def apply_point(cfg: TrainConfig, point: dict) -> TrainConfig:
    """A copy of cfg with one grid or search point's values, each checked by its setting.

    A point naming --recipe switches the recipe first, so the recipe's values apply to the
    settings the user left alone, and the point's other values win over the recipe's.
    """
    cfg = deepcopy(cfg)
    unknown_keys([k for k in point if not k.startswith("model_args.")])
    if "recipe" in point:
        with_recipe(cfg, point["recipe"])
    for k, v in point.items():
        if k.startswith("model_args."):
            cfg.model_args = {**cfg.model_args, k.split(".", 1)[1]: v}
        elif k != "recipe":
            setattr(cfg, k, SETTINGS[k].check(v))
    check_combination(cfg)
    return cfg


def comparable(cfg: dict, ignore: Sequence[str] = ()) -> dict:
    """The settings that decide what a run learns (for checking a rerun matches)."""
    return {k: v for k, v in cfg.items() if k not in NEUTRAL_KEYS and k not in ignore}


def open_experiment(folder: Path, kind: str, base: TrainConfig, spec: dict, force: bool,
                    ignore: Sequence[str] = (), spec_keys: Sequence[str] = ()) -> None:
    """Create the folder or check that a rerun asks for the same experiment.

    `spec_keys` name the entries of `spec` that must match on a rerun (others, like the grid
    values, may grow: finished members are reused and new ones added).
    """
    meta = folder / "experiment.yaml"
    if force and folder.exists():
        shutil.rmtree(folder / "members", ignore_errors=True)
        for name in ("summary.csv", "summary.json", "curves.png", "experiment.yaml",
                     "experiment.html"):
            (folder / name).unlink(missing_ok=True)
    settings = comparable(base.to_dict(), ignore)
    if meta.is_file():
        old = yaml.safe_load(meta.read_text()) or {}
        if old.get("kind") != kind:
            raise CnnlabError(f"{folder}: holds a {old.get('kind')!r} experiment, not {kind!r}; "
                              "pass another --out")
        diff = _diff(old.get("settings", {}), settings)
        diff += _diff({k: old.get("spec", {}).get(k) for k in spec_keys},
                      {k: spec.get(k) for k in spec_keys})
        if diff:
            shown = ", ".join(f"{k} {a!r} -> {b!r}" for k, a, b in diff[:4])
            raise CnnlabError(f"{folder}: made with other settings ({shown}); pass --force to "
                              "start it again or another --out")
    folder.mkdir(parents=True, exist_ok=True)
    io.write_yaml(meta, {"kind": kind, "settings": settings, "spec": spec})


def _diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b), key=str)
            if _norm(a.get(k)) != _norm(b.get(k))]


def _norm(v: object) -> object:
    # YAML turns tuples into lists and may read 1e-3 back as a string in old PyYAML.
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, str):
        try:
            return float(v) if any(c in v for c in ".eE") else v
        except ValueError:
            return v
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    return v


def train_or_resume(cfg: TrainConfig, splits: DataSplits, resume: bool, verbose: bool = True,
                    callbacks: list | None = None, tag: str | None = None) -> RunResult:
    """Train cfg into cfg.out: resume its last.pt if `resume`, else (or when that checkpoint
    was cut short by a crash) start the run anew."""
    if resume:
        try:
            return run_training(cfg, resume=True, splits=splits, verbose=verbose,
                                callbacks=callbacks)
        except CheckpointError as exc:
            console.print(f"[yellow]{tag or cfg.out}: {exc}; starting it again[/]")
            shutil.rmtree(cfg.out, ignore_errors=True)
    return run_training(cfg, force=True, splits=splits, verbose=verbose, callbacks=callbacks)


def run_member(member: Member, folder: Path, verbose: bool = True, index: int = 0,
               total: int = 0) -> Member:
    """Train one member unless its run folder already has metrics.json (then just read it)."""
    run_dir = folder / "members" / member.name
    member.run_dir = run_dir
    tag = f"[{index}/{total}] {member.name}" if total else member.name
    if not (run_dir / "metrics.json").is_file():
        cfg = member.cfg
        cfg.out = str(run_dir)
        resume = (run_dir / "last.pt").is_file()
        if verbose:
            console.print(f"[bold]{tag}[/]: {'resuming' if resume else 'training'}")
        try:
            train_or_resume(cfg, member.splits, resume, verbose, tag=tag)
        except Interrupted:
            raise ExperimentInterrupted(
                f"interrupted in member {member.name}; its checkpoint is saved. Run the same "
                "command again to continue: finished members are not trained again") from None
        member.trained = True
    elif verbose:
        console.print(f"[dim]{tag}: finished before, reusing {run_dir}[/]")
    found = read_run(run_dir)
    member.metrics = found.get("metrics", {})
    member.history = found.get("history", [])
    return member


def aggregate(rows: list[dict], keys: Sequence[str]) -> dict:
    """mean, std (sample, ddof=1), min and max of each numeric column over the rows."""
    out = {}
    for k in keys:
        vals = [float(r[k]) for r in rows if isinstance(r.get(k), (int, float))
                and not isinstance(r.get(k), bool) and math.isfinite(float(r[k]))]
        if not vals:
            continue
        out[k] = {"mean": statistics.fmean(vals),
                  "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                  "min": min(vals), "max": max(vals), "n": len(vals)}
    return out


def fmt(v: object, digits: int = 4) -> str:
    """A table cell."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}"
        return f"{v:.{digits}f}"
    return str(v)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]],
                highlight: int | None = None, caption: str | None = None) -> None:
    """A rich table on stdout (tables are data); `highlight` marks one row."""
    from rich.table import Table

    t = Table(title=title, caption=caption)
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for i, row in enumerate(rows):
        t.add_row(*(fmt(v) for v in row), style="bold green" if i == highlight else None)
    out.print(t)


def write_summary(folder: Path, rows: list[dict], summary: dict) -> None:
    """summary.csv (rows) and summary.json (rows plus everything else), atomically."""
    io.write_csv(folder / "summary.csv", rows)
    io.write_json(folder / "summary.json", {**summary, "rows": rows})


def write_page(folder: Path, title: str, runs: Sequence[Path | str | None]) -> Path:
    """experiment.html from the folder's summary.json and curves.png; runs[i] is the run folder
    of summary row i (aggregate rows have none)."""
    from cnnlab.report.experiment_page import build_experiment_page

    summary = io.read_json(folder / "summary.json", "summary.json",
                           "; run the experiment again to rewrite it")
    return build_experiment_page(folder, title, summary.get("rows", []), runs, summary)


def plot_overlay(curves: dict[str, list[dict]], path: Path, title: str,
                 highlight: str | None = None, mean: bool = False,
                 ranked: Sequence[str] | None = None,
                 states: dict[str, str] | None = None) -> Path:
    """Validation loss and accuracy per epoch of every member on one figure.

    Members without a validation split show their training curves (dashed). `mean` adds the
    epoch-wise mean over members; `highlight` draws one member bold in a colour of its own;
    `ranked` (best first) decides which members are coloured and `states` which are dotted
    (pruned, failed); see report.plots.overlay_figure.
    """
    from cnnlab.report.plots import overlay_figure, save_figure

    return save_figure(overlay_figure(curves, title, highlight, mean, ranked, states), path)


def concat_sets(a: ImageSet, b: ImageSet | None) -> ImageSet:
    """Two ImageSets with the same classes as one (for pooling train and val)."""
    if b is None or len(b) == 0:
        return a
    part = None
    if a.partition is not None and b.partition is not None:
        part = np.concatenate([a.partition, b.partition])
    return ImageSet(torch.cat([a.images, b.images]), torch.cat([a.labels, b.labels]),
                    list(a.classes), list(a.ids) + list(b.ids), part, dict(a.meta))


def pick_split(metrics: dict, prefer: Sequence[str] = ("test", "val", "train")) -> str:
    """The first split of `prefer` present in a run's metrics."""
    return next((s for s in prefer if isinstance(metrics.get(s), dict)), prefer[-1])
