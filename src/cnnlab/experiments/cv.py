"""Stratified k-fold cross-validation on the training data (train + val; the test split waits)."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.console import console
from cnnlab.data.imageset import DataSplits
from cnnlab.data.splits import stratified_split
from cnnlab.errors import CnnlabError
from cnnlab.experiments import common as ex
from cnnlab.experiments.parallel import run_members
from cnnlab.settings import TrainConfig


@dataclass
class CVResult:
    """The experiment folder, one member per fold, the per-fold rows and their aggregates."""

    folder: Path
    members: list[ex.Member]
    rows: list[dict]
    aggregates: dict


def fold_splits(splits: DataSplits, folds: int, seed: int, val_fraction: float) -> list[DataSplits]:
    """One DataSplits per fold: the held-out fold is its `test`; `val` is carved from the rest.

    The pool is every labeled training and validation item. Each fold model picks its best
    epoch on its own inner validation split, so the held-out fold stays unseen until scoring.
    """
    from sklearn.model_selection import StratifiedKFold

    pool = ex.concat_sets(splits.train, splits.val)
    keep = np.flatnonzero(pool.labels.numpy() >= 0)
    pool = pool.subset(keep)
    labels = pool.labels.numpy()
    if folds < 2:
        raise CnnlabError("--folds must be at least 2")
    counts = np.bincount(labels) if len(labels) else np.zeros(0, dtype=int)
    present = counts[counts > 0]
    if len(present) < 2:
        raise CnnlabError(f"{splits.source or 'data'}: cross-validation needs at least 2 classes")
    smallest = int(present.min())
    if smallest < folds:
        raise CnnlabError(f"{splits.source or 'data'}: the smallest class has {smallest} training "
                          f"items, fewer than --folds {folds}")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = []
    for k, (tr, te) in enumerate(skf.split(np.zeros(len(labels)), labels)):
        train_idx, val = tr, None
        if val_fraction > 0:
            kept, held = stratified_split(labels[tr], val_fraction, seed + 1 + k)
            train_idx = tr[kept]
            val = pool.subset(tr[held]) if len(held) else None
        out.append(DataSplits(train=pool.subset(train_idx), val=val, test=pool.subset(te),
                              source=splits.source,
                              split_note=f"fold {k + 1}/{folds} held out as test"))
    return out


def run_cv(base: TrainConfig, folds: int = 5, splits: DataSplits | None = None,
           out: str | Path | None = None, val_fraction: float = 0.1, force: bool = False,
           verbose: bool = True, jobs: int = 1) -> CVResult:
    """Train one model per fold; report each fold's held-out metrics and their mean ± std."""
    base, splits = ex.prepare(base, splits, verbose)
    parts = fold_splits(splits, folds, base.seed, val_fraction)
    folder = ex.experiment_dir(out, base.runs_dir, "cv", splits, base)
    spec = {"folds": folds, "fold_seed": base.seed, "val_fraction": val_fraction}
    ex.open_experiment(folder, "cv", base, spec, force, spec_keys=list(spec))
    members = [ex.Member(f"fold{k + 1}", deepcopy(base), p, labels={"fold": k + 1})
               for k, p in enumerate(parts)]
    if verbose:
        n_pool = sum(len(s) for _, s in parts[0].items())
        console.print(f"[bold]cv[/]: {folds}-fold stratified on {n_pool} training items of "
                      f"{splits.source or 'data'} -> {folder}")
    run_members(members, folder, verbose, jobs)
    rows = [{"fold": m.labels["fold"], "n_train": len(m.splits.train),
             "n_heldout": len(m.splits.test),
             **{f"heldout_{k}": (m.metrics.get("test") or {}).get(k) for k in ex.METRICS},
             "train_accuracy": (m.metrics.get("train") or {}).get("accuracy"),
             "best_epoch": m.metrics.get("best_epoch"),
             "train_seconds": m.metrics.get("train_seconds")} for m in members]
    keys = [f"heldout_{k}" for k in ex.METRICS] + ["train_accuracy", "best_epoch", "train_seconds"]
    agg = ex.aggregate(rows, keys)
    table_rows = rows + [{"fold": stat, **{k: agg[k][stat] for k in agg}}
                         for stat in ("mean", "std")]
    ex.write_summary(folder, table_rows, {"kind": "cv", "data": base.data or "digits",
                                          "source": splits.source, **spec, "aggregates": agg,
                                          "note": "held-out fold metrics; std is the sample "
                                                  "standard deviation (ddof=1)"})
    title = f"{folds}-fold cross-validation on {splits.source or 'data'} ({base.model})"
    ex.plot_overlay({m.name: m.history for m in members}, folder / "curves.png",
                    f"{title}: inner validation curves", mean=True)
    ex.write_page(folder, title, [m.run_dir for m in members])
    if verbose:
        cols = ["fold", "n train", "n held out", "acc", "loss", "f1", "auroc"]
        body = [[r["fold"], r["n_train"], r["n_heldout"],
                 *(r[f"heldout_{k}"] for k in ex.METRICS)] for r in rows]
        body.append(["mean ± std", "", "", *(_pm(agg.get(f"heldout_{k}")) for k in ex.METRICS)])
        ex.print_table(f"{folds}-fold cross-validation (metrics on each held-out fold)", cols,
                       body, highlight=len(body) - 1)
        console.print(f"summary: {folder / 'summary.csv'}, curves: {folder / 'curves.png'}, "
                      f"page: {folder / 'experiment.html'}")
    return CVResult(folder, members, rows, agg)


def _pm(a: dict | None) -> str:
    return "-" if not a else f"{a['mean']:.4f} ± {a['std']:.4f}"
