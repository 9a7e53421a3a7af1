"""Issue 24: `--recipe fast` with no other option against `plain` and a hand-tuned best.

    python bench/recipe.py                      # every case at epochs 3 and 6 (kmnist: 8);
                                                # writes bench/results-recipe.json
    python bench/recipe.py --budgets 5,10,20 --cases digits,symbols
    python bench/recipe.py --kmnist-only        # the KMNIST-style case alone (8 epochs)
    python bench/recipe.py --cases photos-ft --budgets 5,10 --out bench/results-recipe-ft.json

Cases (four kinds of data, each through `cnnlab.train` as a user would call it):

- digits: scikit-learn's 8x8 grey digits (1,797 images), default `cnn`;
- symbols: grey 28x28 letters and symbols rendered here with Pillow from the machine's TrueType
  fonts (random font, size, shift, rotation, stroke noise), default `cnn` -- a stand-in for
  KMNIST-like grey letters, which this machine cannot download;
- rgb: small synthetic CIFAR-format 32x32 colour images (bench/cases.py, its flip-invariant
  variant: a flip preserves the label), default `cnn`;
- photos: hymenoptera JPGs through a frozen ImageNet EfficientNet-Lite0 at 128 px (the
  `cnnlab data fetch hymenoptera` set or $CNNLAB_SHARED_DATA/hymenoptera_data; it has no test
  split, so its val split is the score);
- photos-ft (only when asked: `--cases photos-ft`, about 15 minutes here): the same photos
  with EfficientNet-Lite0's ImageNet weights fine-tuned at 128 px (nothing frozen);
- kmnist: mnist10k's 6,000-image train split (CS 475 `.npy` layout, 28x28 grey) as the
  KMNIST-style case of the issue, default `cnn`, 8 epochs.

Contenders per case and budget: `plain` (the default recipe), `fast` (`--recipe fast`, nothing
else: it picks its lr by a range test and its augmentation/regularisation from the data) and
`tuned` (`--recipe fast --lr 3x` the optimizer's usual rate, the README's hand-tuned fast
path). Runs are interleaved (case by case, the contenders' order alternating) so background
load falls on all alike; `uptime`'s load is recorded with every run. Test accuracy is scored
after every epoch outside the timed loop; time = the run's training seconds at that epoch (the
range test and a frozen backbone's feature pass included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(1, str(HERE.parent / "src"))

import numpy as np  # noqa: E402

from bench.cases import WORK, real_data, write_synthetic_cifar  # noqa: E402
from cnnlab.train.events import Callback, FitContext  # noqa: E402

CONTENDERS = ("plain", "fast", "tuned")


def load() -> str:
    """The 1-minute load average as text."""
    return f"{os.getloadavg()[0]:.2f}"


def write_symbols(folder: Path, n_train: int = 1200, n_test: int = 600, seed: int = 0) -> Path:
    """Grey 28x28 glyphs of 20 letters and symbols in the CS 475 .npy layout."""
    from PIL import Image, ImageDraw, ImageFont

    stamp = folder / f".done-{n_train}-{n_test}-{seed}"
    if stamp.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    chars = "AKQRWxyz&#@%?λψΣΩ§¥€"
    fonts = sorted(str(p) for p in Path("/usr/share/fonts").rglob("*.ttf"))[:12]
    if not fonts:
        raise SystemExit("no TrueType fonts under /usr/share/fonts for the symbols case")
    rng = np.random.default_rng(seed)

    def make(n: int) -> tuple[np.ndarray, np.ndarray]:
        xs = np.empty((n, 28, 28), np.uint8)
        ys = rng.integers(0, len(chars), n)
        for i, k in enumerate(ys):
            font = ImageFont.truetype(fonts[rng.integers(len(fonts))], int(rng.integers(16, 24)))
            img = Image.new("L", (40, 40), 0)
            ImageDraw.Draw(img).text((20 + rng.integers(-3, 4), 20 + rng.integers(-3, 4)),
                                     chars[k], fill=int(rng.integers(170, 256)), font=font,
                                     anchor="mm")
            img = img.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)
            a = np.asarray(img.crop((6, 6, 34, 34)), dtype=np.float32)
            a += rng.normal(0, 25, a.shape)
            xs[i] = np.clip(a, 0, 255).astype(np.uint8)
        return xs, ys

    x, y = make(n_train)
    np.save(folder / "sym_images.npy", x)
    np.save(folder / "sym_labels.npy", y)
    xt, yt = make(n_test)
    np.save(folder / "sym_test_images.npy", xt)
    np.save(folder / "sym_test_labels.npy", yt)
    stamp.touch()
    return folder


def cases(names: list[str]) -> dict[str, dict]:
    """name -> {data, settings, title}."""
    out = {}
    if "digits" in names:
        out["digits"] = {"data": None, "title": "sklearn digits, 8x8 grey, 1,078 train",
                         "settings": {}}
    if "symbols" in names:
        out["symbols"] = {"data": str(write_symbols(WORK / "symbols")),
                          "title": "rendered glyphs, 28x28 grey, 20 classes, 1,200 train",
                          "settings": {}}
    if "rgb" in names:
        # flip-invariant: a flip must preserve labels for the recipe's flip to be judged fairly
        out["rgb"] = {"data": str(write_synthetic_cifar(WORK / "cifar-synth-fi-1200", 1200, 600,
                                                        flip_invariant=True)),
                      "title": "synthetic CIFAR-format 32x32 RGB, 1,200 train",
                      "settings": {"val_split": 0.0}}
    if "photos" in names:
        out["photos"] = {"data": str(real_data("hymenoptera_data", "hymenoptera")),
                         "title": "hymenoptera photos, frozen EfficientNet-Lite0 at 128 px",
                         "settings": {"model": "efficientnet-lite0", "pretrained": True,
                                      "freeze": "all", "image_size": 128}}
    if "photos-ft" in names:
        out["photos-ft"] = {"data": str(real_data("hymenoptera_data", "hymenoptera")),
                            "title": "hymenoptera photos, fine-tuned EfficientNet-Lite0 at 128 px",
                            "settings": {"model": "efficientnet-lite0", "pretrained": True,
                                         "image_size": 128}}
    if "kmnist" in names:
        out["kmnist"] = {"data": str(real_data("mnist10k", "mnist10k")),
                         "title": "mnist10k 6k train (KMNIST-style stand-in), 28x28 grey",
                         "settings": {}}
    return out


class TestCurve(Callback):
    """Scores the test split (val where there is none) after every epoch, outside the timed
    loop, against the run's training seconds so far (+ a frozen backbone's feature pass)."""

    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Score the held-out split with the Trainer's own evaluation pass."""
        split = "test" if ctx.splits.test is not None and len(ctx.splits.test) else "val"
        probs, _ = ctx.score(split)
        acc = float((probs.argmax(1) == ctx.splits.get(split).labels.numpy()).mean())
        t = ctx.state.elapsed + ctx.resolved.get("feature_cache_seconds", 0.0)
        self.points.append((round(t, 2), acc))


def run_one(name: str, case: dict, splits, contender: str, epochs: int, out: Path) -> dict:  # noqa: ANN001
    import cnnlab
    from cnnlab.choices import OPTIMIZER_LRS

    kw = {**case["settings"], "epochs": epochs, "report": False, "seed": 0}
    if contender == "fast":
        kw["recipe"] = "fast"
    elif contender == "tuned":
        kw.update(recipe="fast", lr=3 * OPTIMIZER_LRS["adamw"])
    curve = TestCurve()
    before = load()
    # Every run computes a frozen backbone's features itself: with one shared cache, the
    # on-disk feature store served whichever contender ran second, and the photos' times
    # measured the store, not the recipe.
    os.environ["CNNLAB_CACHE"] = str(out / f"cache-{name}-{contender}-{epochs}")
    res = cnnlab.train(splits, **kw, out=str(out / f"{name}-{contender}-{epochs}"),
                       verbose=False, callbacks=[curve])
    rec = res.resolved.get("recipe") or {}
    return {"case": name, "contender": contender, "epochs": epochs, "curve": curve.points,
            "final": curve.points[-1][1], "seconds": curve.points[-1][0],
            "lr": res.resolved["lr"], "recipe": {k: v for k, v in rec.items() if k != "why"},
            "load": [before, load()]}


def time_to(points: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the curve first reaches `target`."""
    return next((t for t, a in points if a >= target - 1e-12), None)


def main() -> None:
    """Run the grid, print and write the tables."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="digits,symbols,rgb,photos,kmnist")
    ap.add_argument("--budgets", default="3,6")
    ap.add_argument("--kmnist-only", action="store_true")
    ap.add_argument("--out", default=str(HERE / "results-recipe.json"))
    args = ap.parse_args()
    import torch

    from cnnlab.data import load_data
    from cnnlab.run import load_options
    from cnnlab.settings import resolve

    torch.set_num_threads(2)
    names = ["kmnist"] if args.kmnist_only else args.cases.split(",")
    budgets = [8] if args.kmnist_only else [int(b) for b in args.budgets.split(",")]
    runs_dir = WORK / "recipe-runs" / time.strftime("%Y%m%d-%H%M%S")
    results = []
    flip = False
    t_start = time.time()
    print(f"start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {load()}",
          flush=True)
    for name, case in cases(names).items():
        cfg = resolve({**case["settings"], **({"data": case["data"]} if case["data"] else {})})
        splits = load_data(case["data"], load_options(cfg))
        for epochs in ([8] if name == "kmnist" else budgets):  # the 8 epochs
            # kmnist: plain and fast alone (the two commands; 6k images x 8 epochs)
            mine = CONTENDERS[:2] if name == "kmnist" else CONTENDERS
            order = mine[::-1] if flip else mine
            flip = not flip
            for contender in order:
                r = run_one(name, case, splits, contender, epochs, runs_dir)
                results.append(r)
                print(json.dumps({k: r[k] for k in ("case", "contender", "epochs", "final",
                                                    "seconds", "lr", "load")}), flush=True)
    Path(args.out).write_text(json.dumps({"results": results, "cases": {
        n: c["title"] for n, c in cases(names).items()}, "total_s": round(time.time() - t_start),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}, indent=1))
    print(table(results))


def table(results: list[dict]) -> str:
    """The markdown table: accuracy and time to plain's final accuracy per case and budget."""
    rows = ["| case | epochs | plain acc | fast acc | tuned acc | plain s to its final | fast s "
            "to plain's final (x plain) | tuned s (x plain) | fast's lr | load |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    keyed = {(r["case"], r["epochs"], r["contender"]): r for r in results}
    for case, epochs in dict.fromkeys((r["case"], r["epochs"]) for r in results):
        p, f, t = (keyed.get((case, epochs, c)) for c in CONTENDERS)
        if p is None:
            continue
        target = p["final"]
        tp = time_to(p["curve"], target)

        def cell(r: dict | None, target: float = target, tp: float = tp) -> str:
            if r is None:
                return "—"
            s = time_to(r["curve"], target)
            return "not reached" if s is None else f"{s:.1f} ({s / tp:.2f})"

        rows.append(f"| {case} | {epochs} | {p['final']:.4f} | "
                    f"{f['final'] if f else float('nan'):.4f} | "
                    f"{t['final'] if t else float('nan'):.4f} | {tp:.1f} | {cell(f)} | "
                    f"{cell(t)} | {f['lr'] if f else '—'} | "
                    f"{'/'.join(x for r in (p, f, t) if r for x in r['load'][:1])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
