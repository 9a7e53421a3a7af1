"""Side by side: how finished runs differ in settings and in results."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnlab.console import console
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import (
    METRICS,
    fmt,
    pick_split,
    plot_overlay,
    print_table,
    write_page,
    write_summary,
)
from cnnlab.run import read_run
from cnnlab.settings import TrainConfig

# Where a run was written says nothing about how it was trained.
IGNORED = {"out", "name", "runs_dir", "resolved", "resumed"}


@dataclass
class CompareResult:
    """The output folder, the differing settings and one row per run."""

    folder: Path
    differences: dict[str, list]
    rows: list[dict]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _labels(run_dirs: list[Path]) -> list[str]:
    """Short unique names: the folder name, with its parent when two share a name."""
    names = [p.name for p in run_dirs]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in run_dirs]


def compare_runs(run_dirs: list[str | Path], out: str | Path = "runs/compare",
                 verbose: bool = True) -> CompareResult:
    """Write summary.csv (settings that differ + final metrics) and overlaid curves."""
    dirs = []
    for d in run_dirs:
        p = Path(d).expanduser()
        # An experiment folder stands for its members.
        if (p / "members").is_dir() and not (p / "config.yaml").is_file():
            dirs += sorted(q for q in (p / "members").iterdir() if (q / "config.yaml").is_file())
        else:
            dirs.append(p)
    if not dirs:
        raise CnnlabError("compare: give at least one run folder")
    runs = [read_run(p) for p in dirs]  # one clear line for a folder that is not a run
    names = _labels(dirs)
    configs = [_flatten({k: v for k, v in r["config"].items() if k not in IGNORED})
               for r in runs]
    for c, r in zip(configs, runs, strict=True):
        if c.get("lr") is None:  # say which rate "the optimizer's default" was
            used = (r["config"].get("resolved") or {}).get("lr")
            c["lr"] = f"{used if used is not None else TrainConfig.from_dict(c).resolved_lr():g}" \
                " (default)"
    keys = sorted(set().union(*configs))
    differences = {k: [c.get(k) for c in configs] for k in keys
                   if len({repr(c.get(k)) for c in configs}) > 1}
    rows = []
    for name, path, run in zip(names, dirs, runs, strict=True):
        m = run.get("metrics") or {}
        split = pick_split(m)
        rows.append({"run": name, **{k: differences[k][len(rows)] for k in differences},
                     "metrics_of": split if m else None,
                     **{k: (m.get(split) or {}).get(k) if m else None for k in METRICS},
                     "val_accuracy": (m.get("val") or {}).get("accuracy"),
                     "best_epoch": m.get("best_epoch"),
                     "epochs_run": m.get("epochs_run", len(run.get("history") or [])),
                     "train_seconds": m.get("train_seconds"), "finished": bool(m),
                     "path": str(path)})
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    write_summary(folder, rows, {"kind": "compare", "runs": [str(p) for p in dirs],
                                 "differences": differences})
    plot_overlay({n: r.get("history") or [] for n, r in zip(names, runs, strict=True)},
                 folder / "curves.png", f"Comparison of {len(runs)} runs")
    write_page(folder, f"Comparison of {len(runs)} runs", dirs)
    if verbose:
        if differences:
            print_table("settings that differ", ["setting", *names],
                        [[k, *(fmt(v) for v in vals)] for k, vals in differences.items()])
        else:
            console.print("the runs have the same settings")
        cols = ["run", "split", "acc", "loss", "f1", "auroc", "val acc", "best ep", "epochs",
                "time s"]
        best = max(range(len(rows)), key=lambda i: rows[i]["accuracy"] or -1.0)
        print_table("final metrics (best checkpoint)", cols,
                    [[r["run"], r["metrics_of"], *(r[k] for k in METRICS), r["val_accuracy"],
                      r["best_epoch"], r["epochs_run"], r["train_seconds"]] for r in rows],
                    highlight=best if rows[best]["accuracy"] is not None else None)
        console.print(f"summary: {folder / 'summary.csv'}, curves: {folder / 'curves.png'}, "
                      f"page: {folder / 'experiment.html'}")
    return CompareResult(folder, differences, rows)
