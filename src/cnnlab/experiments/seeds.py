"""The same training with several seeds: how much of a result is luck."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path

from cnnlab.console import console
from cnnlab.data.imageset import DataSplits
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import (
    METRICS,
    Member,
    aggregate,
    experiment_dir,
    open_experiment,
    pick_split,
    plot_overlay,
    prepare,
    print_table,
    write_page,
    write_summary,
)
from cnnlab.experiments.parallel import run_members
from cnnlab.settings import TrainConfig


@dataclass
class SeedsResult:
    """The experiment folder, one member per seed, per-seed rows and their aggregates."""

    folder: Path
    members: list[Member]
    rows: list[dict]
    aggregates: dict
    split: str


def run_seeds(base: TrainConfig, n: int = 10, seeds: list[int] | None = None,
              splits: DataSplits | None = None, out: str | Path | None = None,
              force: bool = False, verbose: bool = True, jobs: int = 1) -> SeedsResult:
    """Train with seeds base.seed .. base.seed+n-1 (or `seeds`) on one fixed data split.

    The data is split once, with the base seed; each member's seed changes only the weight
    initialisation, the batch order, dropout and augmentation.
    """
    seeds = list(seeds) if seeds else list(range(base.seed, base.seed + n))
    if not seeds or len(set(seeds)) != len(seeds):
        raise CnnlabError("seeds: give n >= 1 or distinct --seeds")
    base, splits = prepare(base, splits, verbose)
    folder = experiment_dir(out, base.runs_dir, "seeds", splits, base)
    # The split seed must match on a rerun; the training seeds are the members.
    open_experiment(folder, "seeds", base, {"split_seed": base.seed, "seeds": seeds}, force,
                    ignore=["seed"], spec_keys=["split_seed"])
    members = []
    for s in seeds:
        cfg = deepcopy(base)
        cfg.seed = s
        members.append(Member(f"seed={s}", cfg, splits, labels={"seed": s}))
    if verbose:
        console.print(f"[bold]seeds[/]: {len(seeds)} runs of {base.model} on "
                      f"{splits.source or 'data'} -> {folder}")
    run_members(members, folder, verbose, jobs)
    split = pick_split(members[0].metrics)
    rows = []
    for m in members:
        res = m.metrics
        row = {"seed": m.labels["seed"],
               **{f"{split}_{k}": (res.get(split) or {}).get(k) for k in METRICS}}
        if split != "val":
            row["val_accuracy"] = (res.get("val") or {}).get("accuracy")
        rows.append({**row, "best_epoch": res.get("best_epoch"),
                     "train_seconds": res.get("train_seconds")})
    keys = [k for k in rows[0] if k != "seed"]
    agg = aggregate(rows, keys)
    table_rows = rows + [{"seed": stat, **{k: agg[k][stat] for k in agg}}
                         for stat in ("mean", "std", "min", "max")]
    write_summary(folder, table_rows, {"kind": "seeds", "data": base.data or "digits",
                                       "source": splits.source, "seeds": seeds,
                                       "split_seed": base.seed, "metrics_of": split,
                                       "aggregates": agg,
                                       "note": "std is the sample standard deviation (ddof=1)"})
    title = f"{len(seeds)} seeds of {base.model} on {splits.source or 'data'}"
    plot_overlay({m.name: m.history for m in members}, folder / "curves.png", title, mean=True)
    write_page(folder, title, [m.run_dir for m in members])
    if verbose:
        cols = ["seed", f"{split} acc", f"{split} loss", f"{split} f1", f"{split} auroc",
                "best ep", "time s"]
        body = [[r["seed"], *(r[f"{split}_{k}"] for k in METRICS), r["best_epoch"],
                 r["train_seconds"]] for r in rows]
        for stat in ("mean", "std", "min", "max"):
            body.append([stat, *(agg.get(f"{split}_{k}", {}).get(stat) for k in METRICS),
                         agg.get("best_epoch", {}).get(stat),
                         agg.get("train_seconds", {}).get(stat)])
        print_table(f"{len(seeds)} seeds: {split} metrics", cols, body, highlight=len(rows))
        a = agg.get(f"{split}_accuracy")
        if a:
            console.print(f"{split} accuracy {a['mean']:.4f} ± {a['std']:.4f} "
                          f"(min {a['min']:.4f}, max {a['max']:.4f}, n={a['n']})")
        console.print(f"summary: {folder / 'summary.csv'}, curves: {folder / 'curves.png'}, "
                      f"page: {folder / 'experiment.html'}")
    return SeedsResult(folder, members, rows, agg, split)
