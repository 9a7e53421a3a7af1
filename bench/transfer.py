"""The whole transfer-learning workflow on real photos, phase by phase (issue 23, item 5).

    python bench/transfer.py DATA [--epochs 5] [--out bench/results-transfer.md]

Runs, each in a fresh process with an empty $CNNLAB_CACHE (so decoding the files and the
backbone pass are part of the time):

  1. `cnnlab train DATA --model efficientnet-lite0 --pretrained --freeze all --epochs N`,
     report included; its phase times come from the run's metrics.json (`phases`);
  2. `cnnlab doctor DATA --features backbone` right after, on the same cache (it should reuse
     the training run's stored features);

and, in this process, the machine's float32 and bfloat16 matmul rates (torch.matmul of
2048 x 2048 matrices, the threads torch uses), so the feature pass's GFLOP/s can be read as a
fraction of what this CPU does at best under the same load. FLOPs count a multiply-add as 2.
The table goes to --out (markdown) and stdout, with the machine and load average stated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def matmul_gflops(dtype: str, n: int = 2048, seconds: float = 3.0) -> float:
    """Best GFLOP/s of n x n matmuls in `dtype` over about `seconds`."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    torch.matmul(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        torch.matmul(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def lite0_gflop(side: int = 224) -> float:
    """FLOPs (2 per multiply-add) of one EfficientNet-Lite0 backbone pass at side x side."""
    import torch

    from cnnlab.models.efficientnet import efficientnet_lite0

    net = efficientnet_lite0(1000, 3, side).eval()
    macs = [0]

    def hook(m: torch.nn.Module, inp: tuple, out: torch.Tensor) -> None:
        if isinstance(m, torch.nn.Conv2d):
            macs[0] += out.numel() * m.in_channels // m.groups * m.kernel_size[0] * \
                m.kernel_size[1]
        elif isinstance(m, torch.nn.Linear):
            macs[0] += out.numel() * m.in_features

    hooks = [m.register_forward_hook(hook) for m in net.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        net(torch.zeros(1, 3, side, side))
    for h in hooks:
        h.remove()
    return 2 * macs[0] / 1e9


def cnnlab(args: list[str], env: dict) -> tuple[float, str]:
    """Run the cnnlab CLI; (wall seconds, output)."""
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cnnlab", *args], env=env, text=True,
                         capture_output=True, check=False)
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(f"cnnlab {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return wall, res.stdout + res.stderr


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results-transfer.md"))
    ap.add_argument("--work", default=None, help="folder for the cache and run (default: temp)")
    a = ap.parse_args(argv)
    import torch

    work = Path(a.work or tempfile.mkdtemp(prefix="cnnlab-bench-transfer-"))
    env = {**os.environ, "CNNLAB_CACHE": str(work / "cache"),
           "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    load0 = os.getloadavg()[0]
    rates = {d: matmul_gflops(d) for d in ("fp32", "bf16")}
    run_dir = work / "run"
    train_wall, train_log = cnnlab(["train", a.data, "--model", "efficientnet-lite0",
                                    "--pretrained", "--freeze", "all", "--epochs",
                                    str(a.epochs), "--out", str(run_dir)], env)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    phases, resolved = metrics["phases"], metrics["resolved"]
    doctor_wall, doctor_log = cnnlab(["doctor", a.data, "--features", "backbone", "--out",
                                      str(work / "doctor")], env)
    rates_after = {d: matmul_gflops(d) for d in ("fp32", "bf16")}
    load1 = os.getloadavg()[0]
    rates = {d: max(rates[d], rates_after[d]) for d in rates}  # the machine's best in the run
    n = sum(int(metrics[s]["n"]) for s in ("train", "val", "test") if s in metrics)
    gflop = lite0_gflop()
    feat_s = phases["features"]
    ips = n / feat_s if feat_s else float("nan")
    gfs = ips * gflop
    split = "test" if "test" in metrics else "val"
    reused = "reusing the stored backbone features" in doctor_log
    decoded = "decoded (the decode cache)" in doctor_log
    doctor_own = json.loads((work / "doctor" / "doctor.json").read_text())["seconds"]
    engine = f"{resolved.get('feature_engine', 'torch')}, " + \
        {"bf16": "bfloat16", "32": "float32"}.get(str(resolved.get("feature_precision")), "?")
    rows = [("load (decode files)", phases["load"], f"{n / phases['load']:.0f} img/s"),
            ("backbone features", feat_s,
             f"{ips:.1f} img/s, {gfs:.1f} GFLOP/s ({engine}) = "
             f"{100 * gfs / rates['bf16']:.1f}% of bf16 matmul, "
             f"{100 * gfs / rates['fp32']:.1f}% of fp32 matmul"),
            ("head training", phases["train"], f"{a.epochs} epochs"),
            ("scoring + plots", phases["finish"], ""),
            ("report.html", phases["report"],
             f"{100 * phases['report'] / phases['total']:.0f}% of the run, "
             f"{phases['report'] / feat_s:.2f} x the feature pass" if feat_s else ""),
            ("other (start-up, model build)", phases["other"], ""),
            ("**train, whole run**", phases["total"],
             f"process wall {train_wall:.1f} s; {split} accuracy "
             f"{metrics[split]['accuracy']:.4f}"),
            ("doctor --features backbone, right after", doctor_wall,
             f"process wall; its own work {doctor_own:.1f} s, the rest is Python start-up; "
             + ("mapped train's decode, " if decoded else "decoded the files, ")
             + ("reused train's features" if reused else "computed its features"))]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"## Transfer workflow on {Path(a.data).name} ({n} photos, 224 px), {when}", "",
             f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads); load average {load0:.2f} before, "
             f"{load1:.2f} after. Matmul 2048^3 in the same run: fp32 {rates['fp32']:.0f} "
             f"GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s. EfficientNet-Lite0 at 224 px: "
             f"{gflop:.2f} GFLOP per image (2 per multiply-add).", "",
             f"`cnnlab train DATA --model efficientnet-lite0 --pretrained --freeze all "
             f"--epochs {a.epochs}` (empty cache), then `cnnlab doctor DATA --features "
             "backbone`:", "",
             "| phase | seconds | notes |", "|---|---:|---|"]
    lines += [f"| {p} | {s:.1f} | {t} |" for p, s, t in rows]
    phase_line = next((ln for ln in train_log.splitlines() if ln.startswith("phases:")), "")
    lines += ["", f"The run's own line: `{phase_line}`", ""]
    text = "\n".join(lines)
    print(text)
    out = Path(a.out)
    old = out.read_text() if out.is_file() else \
        "# Transfer-workflow benchmark (bench/transfer.py)\n\n"
    out.write_text(old.rstrip("\n") + "\n\n" + re.sub(r"\n{3,}", "\n\n", text))


if __name__ == "__main__":
    main()
