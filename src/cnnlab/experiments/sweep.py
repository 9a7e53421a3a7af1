"""Grid search: every combination of the given settings, trained by the same code as `train`."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from cnnlab.console import console
from cnnlab.data.imageset import DataSplits
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import (
    Member,
    apply_point,
    experiment_dir,
    open_experiment,
    plot_overlay,
    prepare,
    print_table,
    write_page,
    write_summary,
)
from cnnlab.experiments.parallel import run_members
from cnnlab.settings import TrainConfig

SELECT = {"val_acc": ("val", "accuracy", max), "val_loss": ("val", "loss", min)}
SHORT = {"batch_size": "bs", "weight_decay": "wd", "optimizer": "opt", "momentum": "mom"}
# Each member's summary columns from its metrics.json: (split, metric) -> SPLIT_METRIC.
COLUMNS = (("val", "accuracy"), ("val", "loss"), ("test", "accuracy"), ("test", "loss"),
           ("train", "accuracy"))


@dataclass
class SweepResult:
    """The experiment folder, its members and which one is best."""

    folder: Path
    members: list[Member]
    rows: list[dict]
    best: Member | None
    select: str


def member_name(setting: dict) -> str:
    """A folder name for one grid point, e.g. 'lr=0.001_opt=adam'."""
    parts = []
    for k, v in setting.items():
        key = SHORT.get(k, k.replace("model_args.", ""))
        parts.append(f"{key}={v:g}" if isinstance(v, float) else f"{key}={v}")
    return "_".join(parts).replace("/", "-") or "default"


def grid_points(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in the order given (last key varies fastest)."""
    keys = [k for k, v in grid.items() if v]
    return [dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*(grid[k] for k in keys))]


def run_sweep(base: TrainConfig, grid: dict[str, list], splits: DataSplits | None = None,
              out: str | Path | None = None, select: str = "val_acc", prune: bool = False,
              force: bool = False, verbose: bool = True, jobs: int = 1) -> SweepResult:
    """Train every grid point; the best by `select` (val_acc or val_loss) is marked.

    With `prune`, the checkpoints of all but the best member are deleted once the sweep is
    complete (their config, metrics and curves stay).
    """
    if select not in SELECT:
        raise CnnlabError(f"--select {select!r}: choose {', '.join(SELECT)}")
    points = grid_points(grid)
    if not points:
        raise CnnlabError("sweep: give at least one setting with values (e.g. --lr 1e-3,1e-2)")
    apply_point(base, points[0])  # a misspelt setting fails before the data is decoded
    base, splits = prepare(base, splits, verbose)
    varied = list(points[0])
    members = []
    for p in points:
        cfg = apply_point(base, p)  # every point is valid before the first one trains
        members.append(Member(member_name(p), cfg, splits, labels=p))
    if len({m.name for m in members}) != len(members):
        raise CnnlabError("sweep: the grid has repeated values")
    folder = experiment_dir(out, base.runs_dir, "sweep", splits, base)
    open_experiment(folder, "sweep", base, {"grid": {k: list(v) for k, v in grid.items()},
                                            "select": select}, force, ignore=varied)
    if verbose:
        shape = " x ".join(f"{len(grid[k])} {k}" for k in varied)
        console.print(f"[bold]sweep[/] of {len(members)} settings ({shape}) on "
                      f"{splits.source or 'data'} -> {folder}")
    run_members(members, folder, verbose, jobs)
    split, metric, better = SELECT[select]
    rows, scored = [], []
    for m in members:
        res = m.metrics
        chosen = split if isinstance(res.get(split), dict) else "train"
        score = (res.get(chosen) or {}).get(metric)
        rows.append({"member": m.name, **m.labels,
                     **{f"{s}_{k}": (res.get(s) or {}).get(k) for s, k in COLUMNS},
                     "best_epoch": res.get("best_epoch"),
                     "train_seconds": res.get("train_seconds")})
        if score is not None and math.isfinite(score):
            # ties: the higher accuracy / lower loss of the other metric decides
            other = (res.get(chosen) or {}).get("loss" if metric == "accuracy" else "accuracy")
            key = (score, -(other or 0.0)) if better is max else (-score, other or 0.0)
            scored.append((key, m))
    best = max(scored, key=lambda t: t[0])[1] if scored else None
    for row, m in zip(rows, members, strict=True):
        row["best"] = m is best
    if prune and best is not None:
        for m in members:
            for ck in (("last.pt", "best.pt") if m is not best else ()):
                (m.run_dir / ck).unlink(missing_ok=True)
    summary = {"kind": "sweep", "data": base.data or "digits", "source": splits.source,
               "grid": {k: list(v) for k, v in grid.items()},
               "select": select, "selected_on": split if best and isinstance(
                   best.metrics.get(split), dict) else "train",
               "best": {"member": best.name, "settings": best.labels,
                        "run_dir": str(best.run_dir)} if best else None,
               "pruned": prune}
    write_summary(folder, rows, summary)
    plot_overlay({m.name: m.history for m in members}, folder / "curves.png",
                 f"Sweep on {splits.source or 'data'} ({base.model}): validation curves",
                 highlight=best.name if best else None,
                 ranked=[m.name for _, m in sorted(scored, key=lambda t: t[0], reverse=True)])
    write_page(folder, f"Sweep of {len(members)} settings on {splits.source or 'data'} "
               f"({base.model})", [m.run_dir for m in members])
    if verbose:
        cols = [*varied, "val acc", "val loss", "test acc", "best ep", "time s", "best"]
        table = [[*(f"{r[k]:g}" if isinstance(r[k], float) else r[k] for k in varied),
                  r["val_accuracy"], r["val_loss"], r["test_accuracy"], r["best_epoch"],
                  r["train_seconds"], "<- best" if r["best"] else ""] for r in rows]
        hi = members.index(best) if best else None
        print_table(f"sweep: {len(rows)} settings, best by {select} (bold)", cols, table, hi)
        if best:
            console.print(f"best: [bold]{best.name}[/] -> {best.run_dir}")
        console.print(f"summary: {folder / 'summary.csv'}, curves: {folder / 'curves.png'}, "
                      f"page: {folder / 'experiment.html'}")
    return SweepResult(folder, members, rows, best, select)
