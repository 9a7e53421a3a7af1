"""Source -> target transfer with 0..N frozen layers (EECS 445 Project 2, section 4.1).

Each level starts from the source checkpoint's layers (`--init-from`), freezes the first N
layer groups (conv layers for the seed CNNs) and fine-tunes the rest on the target data; a
"scratch" row trains the same model from random weights for comparison. The table holds
train/val/test accuracy and AUROC per setting, as the seed's table does.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from cnnlab.checkpoint import load_checkpoint
from cnnlab.config import TrainConfig
from cnnlab.csvsafe import safe_row
from cnnlab.errors import CnnlabError
from cnnlab.train.run import load_splits, run_training

SPLITS = ("train", "val", "test")


def compare_transfer(source_ckpt: str | Path, base: TrainConfig, levels: list[int],
                     out: str | Path, scratch: bool = True, verbose: bool = True) -> list[dict]:
    """Train one target run per freeze level (and from scratch); write transfer.csv."""
    if not levels:
        raise CnnlabError("--freeze-levels: give at least one level, e.g. 0,1,2,3")
    if any(n < 0 for n in levels):
        raise CnnlabError("--freeze-levels must be >= 0")
    src = load_checkpoint(source_ckpt)
    if not base.model:
        base.model = (src.get("arch") or {}).get("name", "cnn")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg0 = replace(base)
    splits = load_splits(cfg0, verbose)  # also makes cfg0.data absolute
    settings: list[tuple[str, TrainConfig]] = []
    for n in levels:
        settings.append((f"freeze {n}", replace(cfg0, init_from=str(source_ckpt),
                                                freeze=str(n) if n else "none",
                                                out=str(out / f"freeze{n}"), name=None)))
    if scratch:
        settings.append(("scratch", replace(cfg0, init_from=None, freeze="none",
                                            out=str(out / "scratch"), name=None)))
    rows = []
    for label, cfg in settings:
        res = run_training(cfg, force=True, splits=splits, verbose=False)
        row: dict = {"setting": label, "frozen_layers": "" if label == "scratch" else
                     int(label.split()[1]), "best_epoch": res.best_epoch,
                     "run": str(res.run_dir)}
        for split in SPLITS:
            m = res.metrics.get(split) or {}
            row[f"{split}_accuracy"] = m.get("accuracy")
            row[f"{split}_auroc"] = m.get("auroc")
        rows.append(row)
        if verbose:
            from cnnlab.console import console

            console.print(f"{label}: " + "  ".join(
                f"{s} acc {row[f'{s}_accuracy']:.4f} auroc {row[f'{s}_auroc']:.4f}"
                for s in SPLITS if row.get(f"{s}_accuracy") is not None
                and row.get(f"{s}_auroc") is not None))
    path = out / "transfer.csv"
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(safe_row(rows[0])))
        w.writeheader()
        w.writerows(safe_row(r) for r in rows)
    tmp.replace(path)
    return rows
