"""Source -> target transfer with 0..N frozen layers (EECS 445 Project 2, section 4.1).

Each level starts from the source checkpoint's layers (`--init-from`), freezes the first N
layer groups (conv layers for the seed CNNs) and fine-tunes the rest on the target data; a
"scratch" row trains the same model from random weights for comparison. The table holds
train/val/test accuracy and AUROC per setting, as the seed's table does.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cnnlab.checkpoint import load_checkpoint
from cnnlab.console import busy, console
from cnnlab.errors import CnnlabError
from cnnlab.io import write_csv
from cnnlab.run import load_splits, run_training
from cnnlab.settings import TrainConfig

SPLITS = ("train", "val", "test")


def compare_transfer(source_ckpt: str | Path, base: TrainConfig, levels: list[int],
                     out: str | Path, scratch: bool = True, verbose: bool = True) -> list[dict]:
    """Train one target run per freeze level (and from scratch); write transfer.csv."""
    if not levels:
        raise CnnlabError("--freeze-levels: give at least one level, e.g. 0,1,2,3")
    if any(n < 0 for n in levels):
        raise CnnlabError("--freeze-levels must be >= 0")
    load_checkpoint(source_ckpt)  # a bad source fails here, before any target run
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg0 = replace(base)
    splits = load_splits(cfg0, verbose)  # also makes cfg0.data absolute
    settings = [(f"freeze {n}", replace(cfg0, init_from=str(source_ckpt),
                                        freeze=str(n) if n else "none",
                                        out=str(out / f"freeze{n}"), name=None)) for n in levels]
    if scratch:
        settings.append(("scratch", replace(cfg0, init_from=None, freeze="none",
                                            out=str(out / "scratch"), name=None)))
    rows, curves = [], {}
    for i, (label, cfg) in enumerate(settings, 1):
        with busy(f"[{i}/{len(settings)}] {label}: training {cfg.epochs} epochs", verbose):
            res = run_training(cfg, force=True, splits=splits, verbose=False)
        curves[label] = res.history
        row: dict = {"setting": label, "frozen_layers": "" if label == "scratch" else
                     int(label.split()[1]), "best_epoch": res.best_epoch,
                     "run": str(res.run_dir),
                     **{f"{s}_{k}": (res.metrics.get(s) or {}).get(k) for s in SPLITS
                        for k in ("accuracy", "auroc")}}
        rows.append(row)
        if verbose:
            console.print(f"{label}: " + "  ".join(
                f"{s} acc {row[f'{s}_accuracy']:.4f} auroc {row[f'{s}_auroc']:.4f}"
                for s in SPLITS if row.get(f"{s}_accuracy") is not None
                and row.get(f"{s}_auroc") is not None))
    write_csv(out / "transfer.csv", rows)
    _page(out, source_ckpt, rows, curves)
    return rows


def _page(out: Path, source_ckpt: str | Path, rows: list[dict], curves: dict) -> None:
    """curves.png and experiment.html: the levels side by side, linking each run's report."""
    from cnnlab.experiments.common import plot_overlay
    from cnnlab.report.experiment_page import build_experiment_page

    title = f"Transfer from {Path(source_ckpt).name}: {len(rows)} settings"
    plot_overlay(curves, out / "curves.png", title)
    build_experiment_page(out, title, rows, [Path(r["run"]) for r in rows],
                          {"kind": "transfer", "source": str(source_ckpt)})
