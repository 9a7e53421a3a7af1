"""Profile one cnnlab training epoch of a benchmark case: torch.profiler's top operators and
cProfile's top Python functions (where the per-step overhead would show).

    python bench/profile_epoch.py --case a --images 4000 --precision auto
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(1, str(HERE.parent / "src"))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from bench.cases import WORK, build_cases, write_synthetic_cifar  # noqa: E402
from bench.harness import base_config, quiet_load_options  # noqa: E402
from cnnlab.data.load import load_data  # noqa: E402
from cnnlab.train.trainer import Trainer  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Build the case's Trainer, warm up one epoch, then profile the next one."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="a")
    ap.add_argument("--images", type=int, default=4000, help="case a: synthetic training images")
    ap.add_argument("--precision", default=None)
    ap.add_argument("--channels-last", default=None, choices=["true", "false"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    case = build_cases(True, args.case)[0]
    if case.key == "a":
        case.data = write_synthetic_cifar(WORK / f"cifar-synth-{args.images}", args.images, 500)
    out = WORK / "runs" / f"profile-{case.key}"
    shutil.rmtree(out, ignore_errors=True)
    extra = {}
    if args.precision:
        extra["precision"] = args.precision
    if args.channels_last:
        extra["channels_last"] = args.channels_last == "true"
    cfg = base_config(case, out, epochs=3, **extra)
    splits = load_data(cfg.data, quiet_load_options(cfg))
    out.mkdir(parents=True, exist_ok=True)
    tr = Trainer(cfg, splits, out, verbose=False)
    print(f"precision {tr.precision}, channels_last {tr.channels_last}, "
          f"threads {torch.get_num_threads()}")
    tr.fit(stop_after=1)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        tr.fit(stop_after=2)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    pr = cProfile.Profile()
    pr.enable()
    tr.fit(stop_after=3)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(args.top)
    print("\n".join(s.getvalue().splitlines()[:args.top + 12]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
