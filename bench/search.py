"""Search benchmark: a 12-trial study on digits with 2 workers, with and without pruning, and
the equivalent 12-point grid sweep (--jobs 2). Writes <out>/results.md (bench/results-search.md
collects four such runs).

    python bench/search.py [--epochs 10] [--image-size 16] [--metric val_acc|val_loss]
                           [--out runs/bench-search]

Times are of one run each (the whole command, process start included): wall-clock time, and
CPU time of the command and its worker processes (steadier than wall time on a shared machine).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Six learning rates spaced evenly on a log scale over the search range, times two optimizers:
# the grid a user would write for the same 12 trials.
GRID_LR = "1e-4,4e-4,1.6e-3,6.3e-3,2.5e-2,1e-1"


def run(cmd: list[str]) -> tuple[float, float]:
    """Run a cnnlab command; its wall time and CPU time (all its processes) in seconds."""
    print("$", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "cnnlab", *cmd], capture_output=True, text=True)
    secs = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        sys.exit(f"failed: {r.stderr[-3000:]}")
    # Worker processes are waited for by cnnlab, so their CPU time is counted here too.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return secs, cpu


def main() -> None:
    """Run the three commands and write the markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--image-size", type=int, default=16,
                    help="Digits upscaled from 8x8, so training (not process start) dominates.")
    ap.add_argument("--out", default="runs/bench-search")
    ap.add_argument("--metric", default="val_acc", choices=("val_acc", "val_loss"),
                    help="What the searches optimize and the grid selects by (--select).")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    common = ["--epochs", str(args.epochs), "--image-size", str(args.image_size),
              "--num-threads", "1", "--no-member-plots"]
    space = ["--lr", "1e-4:1e-1:log", "--optimizer", "sgd,adamw", "--metric", args.metric]
    cmds = {
        "search, median pruning": ["search", *space, "--trials", "12", "--workers", "2",
                                   "--pruner", "median", *common, "--out", str(out / "pruned")],
        "search, no pruning": ["search", *space, "--trials", "12", "--workers", "2",
                               "--pruner", "none", *common, "--out", str(out / "unpruned")],
        "grid sweep (6 lr x 2 optimizers)": ["sweep", "--lr", GRID_LR, "--optimizer",
                                             "sgd,adamw", "--jobs", "2", "--select",
                                             args.metric, *common,
                                             "--out", str(out / "grid")],
    }
    rows = []
    for name, cmd in cmds.items():
        secs, cpu = run(cmd)
        folder = Path(cmd[cmd.index("--out") + 1])
        if cmd[0] == "search":
            lb = list(csv.DictReader(open(folder / "leaderboard.csv")))
            meta = json.loads((folder / "search.json").read_text())
            best = meta["best"]
            epochs = sum(int(float(r["epochs_run"] or 0)) for r in lb)
            val = json.loads((Path(best["run_dir"]) / "metrics.json").read_text())["val"]
            rows.append({"what": name, "seconds": secs, "cpu": cpu,
                         "best_val_acc": val["accuracy"], "best_val_loss": val["loss"],
                         "best": ", ".join(f"{k}={_f(v)}" for k, v in best["params"].items()),
                         "pruned": meta["counts"]["pruned"], "epochs": epochs,
                         "cmd": "cnnlab " + " ".join(cmd)})
        else:
            summ = json.loads((folder / "summary.json").read_text())
            best_row = next(r for r in summ["rows"] if r.get("best"))
            epochs = sum(len(_hist(folder, r["member"])) for r in summ["rows"])
            rows.append({"what": name, "seconds": secs, "cpu": cpu,
                         "best_val_acc": best_row["val_accuracy"],
                         "best_val_loss": best_row["val_loss"],
                         "best": summ["best"]["member"], "pruned": 0, "epochs": epochs,
                         "cmd": "cnnlab " + " ".join(cmd)})
    write(rows, args)


def _hist(folder: Path, member: str) -> list:
    return list(csv.DictReader(open(folder / "members" / member / "metrics.csv")))


def _f(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write(rows: list[dict], args: argparse.Namespace) -> None:
    """bench/results-search.md."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = ["# Search benchmark (bench/search.py)", "",
             f"Digits (sklearn, 8x8 upscaled to {args.image_size}x{args.image_size}, built in), "
             f"model cnn, {args.epochs} epochs per trial, "
             "2 workers (one thread each), one run of each command. "
             f"Machine: {platform.processor() or platform.machine()}, {cpus} CPUs, "
             f"load average {load:.1f} at the end. Searches optimize, and the grid selects by, "
             f"`{args.metric}`; the best run's validation accuracy and loss are both shown.", "",
             "| run | wall time s | CPU time s | epochs trained | pruned trials | best val acc | "
             "best val loss | best |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['what']} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['epochs']} | "
                     f"{r['pruned']} | "
                     f"{r['best_val_acc']:.4f} | {r['best_val_loss']:.4f} | {r['best']} |")
    lines += ["", "Commands:", ""] + [f"    {r['cmd']}" for r in rows] + [""]
    # bench/results-search.md collects several of these runs (sizes, metrics) by hand
    path = Path(args.out) / "results.md"
    path.write_text("\n".join(lines))
    print(path.read_text())


if __name__ == "__main__":
    main()
