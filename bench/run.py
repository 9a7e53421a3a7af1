"""`make bench`: cnnlab against the model-only limit, the textbook loop, Lightning and skorch.

Every variant of a case trains the same seeded network with the same optimizer, batch size and
epochs. Epochs are interleaved (round-robin, alternating direction) so background load hits all
variants alike, and every ratio comes from one run. Writes bench/results.md and results.json.

    python bench/run.py            # the full benchmark (< 20 minutes on 2 quiet cores)
    python bench/run.py --quick    # a smoke test of the harness (about a minute)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # `bench` as a package when run as a script
sys.path.insert(1, str(HERE.parent / "src"))

import torch  # noqa: E402

from bench.cases import WORK, Case, build_cases  # noqa: E402
from bench.harness import (  # noqa: E402
    CnnlabVariant,
    ModelOnly,
    Variant,
    load_average,
    matmul_peak,
    prepare,
    train_flops_per_image,
)

FAST = "cnnlab --recipe fast"
FAST_LR_MULT = 3.0  # the fast contender's --lr: the one-cycle peak, 3x the case's constant rate
# A one-cycle schedule needs its length in advance; a user racing for time asks for fewer
# epochs. This contender runs the recipe over 2/3 of the case's epochs (rounded up).
FAST_SHORT = "cnnlab --recipe fast, 2/3 of the epochs"


def short_epochs(epochs: int) -> int:
    """The FAST_SHORT contender's epochs: 2/3 of the case's, rounded up."""
    return -(-2 * epochs // 3)
# the contenders of the time-to-accuracy table, by variant name (the textbook is found by kind)
CONTENDERS = {"PyTorch Lightning Trainer.fit": "Lightning", "skorch NeuralNetClassifier.fit":
              "skorch", "cnnlab (defaults)": "cnnlab plain", FAST: "cnnlab fast",
              FAST_SHORT: "cnnlab fast, 2/3 of the epochs"}


def log(msg: str) -> None:
    """Progress on stderr (results go to the files)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def variants_for(case: Case, prep, peers: dict, args: argparse.Namespace) -> list[Variant]:  # noqa: ANN001
    """Every way of training this case, in scheduling order."""
    from bench.textbook import Textbook

    vs: list[Variant] = [ModelOnly(case, prep)]
    if not case.pretrained:
        vs.append(ModelOnly(case, prep, channels_last=True, bf16=True))
    vs.append(CnnlabVariant(case, prep, "cnnlab (defaults)", "default"))
    if not case.pretrained:
        # `--recipe fast --lr 3x`: the recipe's values replace the case's constant schedule,
        # and its one-cycle peak is 3x the case's constant rate (one-cycle spends most steps
        # well below its peak); network, batch size, epochs and augmentation stay the case's
        from cnnlab.settings import RECIPES

        vs.append(CnnlabVariant(case, prep, FAST, "fast", recipe="fast",
                                **{**RECIPES["fast"], "lr": case.lr * FAST_LR_MULT}))
        short = short_epochs(case.epochs)
        if short < case.epochs:
            v = CnnlabVariant(case, prep, FAST_SHORT, "fast-short", recipe="fast",
                              **{**RECIPES["fast"], "lr": case.lr * FAST_LR_MULT,
                                 "epochs": short})
            v.epochs_budget = short
            vs.append(v)
    if not case.pretrained and args.fp32_cnnlab:
        vs.append(CnnlabVariant(case, prep, "cnnlab --precision 32", "fp32", precision="32",
                                channels_last=False))
    vs.append(Textbook(prep))
    if case.peers and not args.no_peers:
        from bench.peer_process import ProcessPeer
        from bench.peers import LightningPeer, SkorchPeer

        # each in a process of its own (see bench/peer_process.py for why)
        for key, cls in (("lightning", LightningPeer), ("skorch", SkorchPeer)):
            if peers.get(key):
                vs.append(ProcessPeer(case, key, cls.name, torch.get_num_threads()))
    return vs


def run_case(case: Case, peers: dict, args: argparse.Namespace) -> dict:
    """Set up every variant, run their epochs interleaved, then summarize."""
    os.environ["CNNLAB_CACHE"] = str(WORK / f"cache-{case.key}")
    shutil.rmtree(os.environ["CNNLAB_CACHE"], ignore_errors=True)  # first run decodes cold
    t_case = time.perf_counter()
    log(f"case {case.key}: {case.title}")
    prep = prepare(case)
    flops = train_flops_per_image(case, prep)
    vs = variants_for(case, prep, peers, args)
    rec: dict[str, dict] = {}
    for v in vs:
        r = rec[v.name] = {"kind": v.kind, "epochs": [], "acc": [], "error": None}
        try:
            t0 = time.perf_counter()
            v.setup()
            r["setup_s"] = time.perf_counter() - t0
            r["note"] = v.note
        except Exception as exc:  # noqa: BLE001 - one broken variant must not stop the bench
            r["error"] = f"setup: {type(exc).__name__}: {exc}"[:300]
            log(f"  {v.name} failed to set up: {r['error']}")
            if args.verbose:
                traceback.print_exc()
    live = [v for v in vs if rec[v.name]["error"] is None]
    t_round = 0.0
    for e in range(case.epochs):
        left = args.case_deadline - time.perf_counter()
        if e >= 1 and left < t_round * 1.1:
            log(f"  stopping case {case.key} after {e} epochs: the time budget is nearly spent")
            budget_note = f"stopped after {e} of {case.epochs} epochs by the time budget"
            break
        t_r = time.perf_counter()
        order = live if e % 2 == 0 else list(reversed(live))
        for v in order:
            r = rec[v.name]
            if r["error"] or (v.epochs_budget is not None and e >= v.epochs_budget):
                continue
            try:
                t0 = time.perf_counter()
                v.epoch()
                dt = time.perf_counter() - t0
                r["epochs"].append(dt)
                r["acc"].append(v.accuracy())
                log(f"  epoch {e + 1}/{case.epochs} {v.name}: {dt:.2f}s acc {r['acc'][-1]:.4f}")
            except Exception as exc:  # noqa: BLE001
                r["error"] = f"epoch {e + 1}: {type(exc).__name__}: {exc}"[:300]
                log(f"  {v.name} failed: {r['error']}")
                if args.verbose:
                    traceback.print_exc()
        t_round = time.perf_counter() - t_r
    else:
        budget_note = None
    for v in vs:
        try:
            rec[v.name].update(v.finish())
        except Exception as exc:  # noqa: BLE001
            rec[v.name]["finish_error"] = f"{type(exc).__name__}: {exc}"[:200]
    out = {"key": case.key, "title": case.title, "model": case.model,
           "batch_size": case.batch_size, "epochs": case.epochs, "lr": case.lr,
           "augment": case.augment, "n_train": len(prep.train_y), "n_eval": len(prep.eval_y),
           "eval_split": prep.eval_name, "train_gflop_per_image": flops / 1e9,
           "variants": rec, "load_avg_end": load_average(), "budget_note": budget_note}
    if case.key == "c":
        out["second_run"] = second_run(case, prep)
    out["seconds"] = time.perf_counter() - t_case
    summarize(out)
    log(f"case {case.key} done in {out['seconds']:.0f}s")
    return out


def second_run(case: Case, prep) -> dict:  # noqa: ANN001
    """A second cnnlab run on the same JPG folder: the decode cache makes it start at once."""
    v = CnnlabVariant(case, prep, "cnnlab second run", "second")
    t0 = time.perf_counter()
    v.setup()
    ready = time.perf_counter() - t0
    t1 = time.perf_counter()
    v.epoch()
    first_epoch = time.perf_counter() - t1
    cache = v.splits.train.meta.get("cache", "?")
    return {"ready_s": ready, "load_s": v.load_s, "first_epoch_s": first_epoch, "cache": cache}


def steady(times: list[float]) -> float | None:
    """Epoch time after warm-up: the median of epochs 2.. (or the only epoch)."""
    if not times:
        return None
    return statistics.median(times[1:]) if len(times) > 1 else times[0]


def summarize(case: dict) -> None:
    """Per-variant steady epoch time, images/s, ratios, time to the target accuracy, GFLOP/s."""
    rec = case["variants"]
    limit = next((r for n, r in rec.items() if n == "model-only fp32 (naive)"), None)
    text = next((r for r in rec.values() if r["kind"] == "textbook"), None)
    # (d) compares with training the head through the frozen backbone: its accuracy is the bar
    ref = limit if case["key"] == "d" else (text or limit)
    ref_acc = (ref or {}).get("acc") or []
    case["target_acc"] = (ref_acc[-1] - 0.01) if ref_acc else None
    # time-to-accuracy (issue 14): the textbook loop's own final accuracy, no tolerance
    case["textbook_acc"] = text["acc"][-1] if text and text["acc"] else None
    case["target_from"] = "model-only (frozen backbone every epoch)" if ref is limit else \
        "textbook fp32"
    lim_t = steady(limit["epochs"]) if limit else None
    for r in rec.values():
        st = steady(r["epochs"])
        r["steady_s"], r["first_s"] = st, (r["epochs"][0] if r["epochs"] else None)
        r["images_per_s"] = case["n_train"] / st if st else None
        r["x_limit"] = st / lim_t if st and lim_t else None
        r["gflops"] = case["train_gflop_per_image"] * r["images_per_s"] if st else None
        r["final_acc"] = r["acc"][-1] if r["acc"] else None
        r["time_to_target_s"] = None
        r["time_to_textbook_s"], r["epochs_to_textbook"] = _time_to(
            r, case["textbook_acc"]) if case.get("textbook_acc") is not None else (None, None)
        if case["target_acc"] is not None:
            start = r.get("ready_s", r.get("setup_s", 0.0)) if r["kind"] != "limit" else 0.0
            t = start
            for dt, acc in zip(r["epochs"], r["acc"], strict=False):
                t += dt
                if acc >= case["target_acc"] - 1e-9:
                    r["time_to_target_s"] = t
                    break


def _time_to(r: dict, target: float) -> tuple[float | None, int | None]:
    """(setup + training seconds, epochs) until the eval accuracy first reaches `target`."""
    t = r.get("ready_s", r.get("setup_s", 0.0)) if r["kind"] != "limit" else 0.0
    for e, (dt, acc) in enumerate(zip(r["epochs"], r["acc"], strict=False), 1):
        t += dt
        if acc >= target - 1e-9:
            return t, e
    return None, None


def time_to_accuracy(case: dict) -> tuple[list[str], list[str]]:
    """The time-to-accuracy table rows and its targets (cases a and b)."""
    rec = case["variants"]
    tb_name = next((n for n, r in rec.items() if r["kind"] == "textbook"), None)
    if tb_name is None or case.get("textbook_acc") is None:
        return [], []
    tb = rec[tb_name]
    names = [tb_name] + [n for n in CONTENDERS if n in rec]
    rows = ["| contender | seconds to the textbook's final accuracy | epochs | × textbook time "
            "| final acc |", "|---|---:|---:|---:|---:|"]
    for n in names:
        r = rec[n]
        t, tbt = r.get("time_to_textbook_s"), tb.get("time_to_textbook_s")
        ratio = t / tbt if t and tbt else None
        label = "textbook loop" if n == tb_name else CONTENDERS[n]
        reached = _f(t, "{:.1f}") if t is not None else f"not in {len(r['epochs'])} epochs"
        rows.append(f"| {label} | {reached} | {r.get('epochs_to_textbook') or '—'} "
                    f"| {_f(ratio)} | {_f(r.get('final_acc'), '{:.4f}')} |")
    targets = []
    if case["key"] in "ab":
        best_name = min((n for n in (FAST, FAST_SHORT, "cnnlab (defaults)") if n in rec),
                        key=lambda n: rec[n].get("time_to_textbook_s") or float("inf"),
                        default=None)
        best = rec.get(best_name, {}).get("time_to_textbook_s") if best_name else None
        for other, share, label in ((tb_name, 3, "the textbook loop's"),
                                    ("PyTorch Lightning Trainer.fit", 2, "Lightning's"),
                                    ("skorch NeuralNetClassifier.fit", 2, "skorch's")):
            orec = rec.get(other, {})
            o = orec.get("time_to_textbook_s")
            never = o is None and bool(orec.get("acc"))  # ran, but never got there
            ok = None if best is None or (o is None and not never) else never or best <= o / share
            mark = "n/a " if ok is None else ("PASS" if ok else "MISS")
            theirs = f"not in {len(orec['acc'])} epochs" if never else f"{_f(o, '{:.1f}')} s"
            targets.append(f"{mark} cnnlab (best recipe: {CONTENDERS.get(best_name, '—')}) "
                           f"reaches the textbook's final accuracy in ≤ 1/{share} of {label} "
                           f"time: {_f(best, '{:.1f}')} s vs {theirs}")
    return rows, targets


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def check_targets(case: dict) -> list[str]:
    """The issue's targets for this case, each PASS or MISS with the measured figure."""
    rec = case["variants"]
    cn = rec.get("cnnlab (defaults)", {})
    lines = []

    def ratio(other: str) -> float | None:
        o = rec.get(other)
        if not o or not o.get("steady_s") or not cn.get("steady_s"):
            return None
        return o["steady_s"] / cn["steady_s"]

    def mark(ok: bool | None) -> str:
        return "n/a " if ok is None else ("PASS" if ok else "MISS")

    tb_name = next((n for n, r in rec.items() if r["kind"] == "textbook"), "")
    if case["key"] in "ab":
        r = ratio(tb_name)
        lines.append(f"{mark(None if r is None else r >= 2)} ≥ 2× faster than the textbook loop:"
                     f" {_f(r)}×")
        for peer in ("PyTorch Lightning Trainer.fit", "skorch NeuralNetClassifier.fit"):
            r = ratio(peer)
            lines.append(f"{mark(None if r is None else r >= 1.5)} ≥ 1.5× faster than {peer}: "
                         f"{_f(r)}×")
        tb_acc = rec.get(tb_name, {}).get("final_acc")
        ok = None if tb_acc is None or cn.get("final_acc") is None else \
            cn["final_acc"] >= tb_acc - 0.01
        lines.append(f"{mark(ok)} test accuracy within 1 point of the fp32 textbook: cnnlab "
                     f"{_f(cn.get('final_acc'), '{:.4f}')} vs {_f(tb_acc, '{:.4f}')}")
        r = ratio("model-only fp32 (naive)")
        lines.append(f"{mark(None if r is None else r > 1)} faster than the naive model-only "
                     f"loop: {_f(r)}×")
    if case["key"] == "c":
        r = ratio(tb_name)
        lines.append(f"{mark(None if r is None else r >= 10)} ≥ 10× faster per epoch than the "
                     f"textbook loop after the first epoch: {_f(r)}×")
        sr = case.get("second_run", {})
        ok = None if "ready_s" not in sr else sr["ready_s"] < 1
        lines.append(f"{mark(ok)} a second run starts training in < 1 s: "
                     f"{_f(sr.get('ready_s'), '{:.3f}')} s (decode cache: {sr.get('cache')})")
    if case["key"] == "d":
        base = rec.get("model-only fp32 (naive)", {})
        a, b = cn.get("time_to_target_s"), base.get("time_to_target_s")
        r = b / a if a and b else None
        lines.append(f"{mark(None if r is None else r >= 5)} ≥ 5× faster to the same accuracy "
                     f"than training the head through the frozen backbone every epoch: {_f(r)}× "
                     f"({_f(a)} s vs {_f(b)} s)")
    return lines


def write_results(results: dict, path: Path) -> None:
    """bench/results.md: machine, conditions, one table per case, the targets."""
    m = results["machine"]
    lines = ["# cnnlab benchmark results", "",
             f"Written by `bench/run.py {results.get('argv', '')}` on "
             f"{results['date']}. {m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, "
             f"torch {m['torch']}, Python {m['python']}.",
             f"Load average (1/5/15 min) at start {m['load_start']}, at end {m['load_end']}"
             f" — anything well above 0 means other work shared the CPU "
             f"and absolute times are inflated; ratios come from interleaved epochs of one run.",
             f"Measured matmul peak (1024×1024): fp32 {m['peak']['fp32']:.0f} GFLOP/s, "
             f"bf16 {m['peak']['bf16']:.0f} GFLOP/s. Total time {results['seconds']:.0f} s.", ""]
    if results["quick"]:
        lines += ["**Quick mode: tiny data and 1-2 epochs; a smoke test, not a measurement.**", ""]
    if results.get("peers"):
        lines.append("Peers: " + ", ".join(f"{k} {v or 'not installed'}"
                                           for k, v in results["peers"].items()) + ".")
        lines.append("")
    for case in results["cases"]:
        lines += [f"## ({case['key']}) {case['title']}", "",
                  f"`{case['model']}`, batch {case['batch_size']}, {case['epochs']} epochs, "
                  f"AdamW lr {case['lr']:g}, augment {case['augment'] or 'none'}; "
                  f"{case['n_train']} training images, accuracy on {case['eval_split']} "
                  f"({case['n_eval']}). Training cost {case['train_gflop_per_image']:.4f} "
                  f"GFLOP per image (forward + backward, torch's flop counter). "
                  f"Target accuracy ({case['target_from']} final − 1 point): "
                  f"{_f(case['target_acc'], '{:.4f}')}. Load average at end: "
                  f"{case['load_avg_end']}.", "",
                  "| variant | setup s | epoch 1 s | epoch s (steady) | images/s | × limit "
                  "| GFLOP/s | final acc | time to target s |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in case["variants"].items():
            if r["error"] and not r["epochs"]:
                lines.append(f"| {name} | failed: {r['error'][:120]} |||||||| ")
                continue
            setup = r.get("ready_s", r.get("setup_s"))
            lines.append(
                f"| {name} | {_f(setup)} | {_f(r['first_s'])} | {_f(r['steady_s'], '{:.3f}')} "
                f"| {_f(r['images_per_s'], '{:.0f}')} | {_f(r['x_limit'])} "
                f"| {_f(r['gflops'], '{:.1f}')} | {_f(r['final_acc'], '{:.4f}')} "
                f"| {_f(r['time_to_target_s'], '{:.1f}')} |")
        cn = case["variants"].get("cnnlab (defaults)", {})
        notes = []
        if cn.get("precision") is not None:
            notes.append(f"cnnlab defaults resolved to precision {cn['precision']}, "
                         f"channels_last {cn.get('channels_last')}")
        if cn.get("load_s") is not None:
            notes.append(f"cnnlab read the source in {cn['load_s']:.2f} s")
        for name, r in case["variants"].items():
            if r.get("note"):
                notes.append(f"{name}: {r['note']}")
            if r["error"] and r["epochs"]:
                notes.append(f"{name} stopped: {r['error'][:150]}")
        if case.get("budget_note"):
            notes.append(case["budget_note"])
        sr = case.get("second_run")
        if sr:
            notes.append(f"second cnnlab run on the same folder: ready to train in "
                         f"{sr['ready_s']:.3f} s (source read {sr['load_s']:.3f} s, cache "
                         f"{sr['cache']}), first epoch {sr['first_epoch_s']:.3f} s")
        if notes:
            lines += [""] + [f"- {n}" for n in notes]
        lines += ["", "Targets:", ""] + [f"- {t}" for t in check_targets(case)] + [""]
        tta_rows, tta_targets = time_to_accuracy(case)
        if tta_rows:
            lines += [f"Time to accuracy: seconds (setup + training epochs, evaluation not "
                      f"counted) until the eval accuracy first reaches the textbook loop's "
                      f"final accuracy {_f(case['textbook_acc'], '{:.4f}')}; one run, "
                      f"interleaved epochs. cnnlab plain = the case's settings (constant rate, "
                      f"like the textbook); cnnlab fast = `--recipe fast --lr "
                      f"{case['lr'] * FAST_LR_MULT:g}` (one-cycle peaking at {FAST_LR_MULT:g}× "
                      f"the case's rate, momentum cycled, label smoothing 0.1, EMA 0.99) over "
                      f"the case's "
                      f"{case['epochs']} epochs; *2/3 of the epochs* = the same with `--epochs "
                      f"{short_epochs(case['epochs'])}` (one-cycle needs its length in advance: "
                      f"asking for fewer epochs is how a user trades accuracy for time).", ""]
            lines += tta_rows + [""]
            lines += [f"- {t}" for t in tta_targets] + ([""] if tta_targets else [])
    lines += ["## How to read this", "",
              "- *model-only*: forward + backward + step on normalized float tensors already in "
              "memory, no augmentation, no data pipeline: the limit for that model and "
              "numeric format. *× limit* divides each steady epoch time by the naive fp32 one "
              "(below 1 = faster than the naive limit).",
              "- *cnnlab*: what `cnnlab train` runs (source read with the decode cache, Trainer "
              "epochs including its validation pass and checkpoint writes); setup includes "
              "reading the source.",
              "- *textbook*: the seeds' PIL Dataset + per-sample transforms + DataLoader(2 "
              "workers) + loop, fp32.",
              "- *Lightning / skorch*: their own fit() with the same network and optimizer on "
              "data already decoded in memory, per-sample augmentation in the Dataset.",
              "- Epoch 1 includes warm-up (worker start, first-call allocations, feature "
              "extraction); the steady figure is the median of the later epochs.",
              "- Time to target = setup + training epochs until the eval accuracy first reaches "
              "the target (evaluation itself is not counted).", ""]
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the cases, write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny smoke test of the harness")
    ap.add_argument("--cases", default="abcd", help="which cases (letters), default abcd")
    ap.add_argument("--images", type=int, default=None,
                    help="case (a): synthetic training images (default 40000, quick 2000)")
    ap.add_argument("--epochs", type=int, default=None, help="override every case's epochs")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: cores)")
    ap.add_argument("--no-peers", action="store_true", help="skip Lightning and skorch")
    ap.add_argument("--no-fp32-cnnlab", dest="fp32_cnnlab", action="store_false",
                    help="skip the extra cnnlab --precision 32 variant")
    ap.add_argument("--budget-minutes", type=float, default=19.0,
                    help="stop starting new epochs when the whole run would exceed this")
    ap.add_argument("--out", type=Path, default=None, help="results file (bench/results.md)")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = ap.parse_args(argv)
    from bench.peers import available
    from cnnlab.device import set_threads

    set_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    args.deadline = t0 + args.budget_minutes * 60
    load_start = load_average()
    peers = {} if args.no_peers else available()
    log(f"{torch.get_num_threads()} threads, load {load_start}, peers {peers}")
    peak = matmul_peak(0.5 if args.quick else 2.0)
    log(f"matmul peak fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")
    todo = build_cases(args.quick, args.cases, args.images, args.epochs)
    # Each case may use its share of the budget (plus what earlier cases left unused).
    share = {"a": 0.50, "b": 0.08, "c": 0.05, "d": 0.37}
    total = sum(share[c.key] for c in todo)
    cases, used = [], 0.0
    for c in todo:
        used += share[c.key] / total
        args.case_deadline = args.deadline - args.budget_minutes * 60 * (1 - used)
        cases.append(run_case(c, peers, args))
    results = {"quick": args.quick, "argv": " ".join(sys.argv[1:] if argv is None else argv),
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                           "threads": torch.get_num_threads(), "torch": torch.__version__,
                           "python": platform.python_version(), "load_start": load_start,
                           "load_end": load_average(), "peak": peak},
               "peers": peers, "cases": cases, "seconds": time.perf_counter() - t0}
    out = args.out or (WORK / "results-quick.md" if args.quick else HERE / "results.md")
    write_results(results, out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {out} ({results['seconds']:.0f} s)")
    for case in cases:
        for t in check_targets(case) + time_to_accuracy(case)[1]:
            print(f"({case['key']}) {t}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
