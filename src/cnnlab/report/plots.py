"""Matplotlib figures of a run (learning curves, confusion matrix) and of an experiment (its
members' curves overlaid)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from cnnlab.io import atomic_path  # noqa: E402

FIGURE_DPI = 110  # every figure of the report and the explain commands


def save_figure(fig: plt.Figure, path: Path, tight: bool = True, dpi: int = FIGURE_DPI
                ) -> Path:
    """Save as PNG (atomically) and close; tight=False skips the extra layout pass."""
    try:
        with atomic_path(path, suffix=".tmp") as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, format="png")
    finally:
        plt.close(fig)
    return path


def plot_train_val(rows: list[dict], x: str, path: Path, title: str, xlabel: str,
                   train_label: str = "train", train_style: str = "-o") -> Path:
    """Loss and accuracy of train and val against column `x` (epoch or step); rows without a
    value for a split are skipped, so val measured every N steps draws one line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "loss", "Loss"), (axes[1], "acc", "Accuracy")):
        for split, style, name in (("train", train_style, train_label), ("val", "-s", "val")):
            pts = [(r[x], r[f"{split}_{key}"]) for r in rows
                   if r.get(f"{split}_{key}") is not None]
            if pts:
                xs, ys = np.array(pts, dtype=float).T
                ax.plot(xs, ys, style, ms=3, label=name)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole
        ax.set_ylabel(label.lower())
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_curves(history: list[dict], path: Path, title: str = "Learning curves") -> Path:
    """Loss and accuracy per epoch, train and val."""
    return plot_train_val(history, "epoch", path, title, "epoch")


def plot_confusion(cm: list[list[int]], classes: list[str], path: Path,
                   title: str = "Confusion matrix") -> Path:
    """Counts with row-normalised colour, true classes on rows."""
    m = np.asarray(cm, dtype=float)
    k = len(classes)
    size = min(14, max(4, 0.45 * k + 2.5))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    norm = m / np.clip(m.sum(1, keepdims=True), 1, None)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    return save_figure(fig, path)


# The overlay of an experiment's members: the best member alone wears BEST_COLOR (no other
# member is drawn in it), the next members in rank order take PALETTE x LINESTYLES, the rest
# are thin grey; pruned or failed members are dotted and faded.
BEST_COLOR = "#d62728"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
           "#17becf")  # tab10 without its red (the best's) and grey (the rest's)
LINESTYLES = ("-", "-.")
TOP = 10  # members coloured (besides the best): more colours could not be told apart
OTHER_COLOR = "#9a9a9a"
FADED = {"pruned", "fail", "failed", "running", "waiting"}  # states not run to the end
FENCE = 3.0  # y-limits: values beyond FENCE interquartile ranges of the quartiles are cut off


@dataclass
class _Style:
    color: str
    ls: str
    lw: float
    alpha: float
    zorder: float
    label: str | None  # None: summed up in an "others" legend entry


def _styles(names: Sequence[str], best: str | None, states: Mapping[str, str]
            ) -> dict[str, _Style]:
    """A style per member; `names` in rank order (best first where known)."""
    styles, k = {}, 0
    for name in names:
        state = states.get(name, "complete")
        faded = state in FADED
        tag = f" ({'failed' if state == 'fail' else state})" if faded else ""
        if name == best:
            styles[name] = _Style(BEST_COLOR, "-", 2.8, 1.0, 4, f"{name} (best)")
        elif k < TOP:
            color, ls = PALETTE[k % len(PALETTE)], LINESTYLES[k // len(PALETTE)]
            styles[name] = _Style(color, ":" if faded else ls, 1.3, 0.5 if faded else 0.95,
                                  2 if faded else 3, f"{name}{tag}")
            k += 1
        else:
            styles[name] = _Style(OTHER_COLOR, ":" if faded else "-", 0.8,
                                  0.45 if faded else 0.6, 1, None)
    return styles


def robust_limits(values: Sequence[float], keep: Sequence[float] = ()) -> tuple[float, float]:
    """y-limits that hold every value within FENCE interquartile ranges of the quartiles (so
    one spike does not flatten the other curves), and all of `keep` (the best member's)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if v.size == 0:
        return 0.0, 1.0
    q1, q3 = np.percentile(v, [25, 75])
    iqr = q3 - q1
    lo, hi = max(v.min(), q1 - FENCE * iqr), min(v.max(), q3 + FENCE * iqr)
    kept = [x for x in keep if np.isfinite(x)]
    if kept:
        lo, hi = min(lo, min(kept)), max(hi, max(kept))
    pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    return float(lo - pad), float(hi + pad)


def _off_chart(values: Sequence[float], lo: float, hi: float) -> str:
    """'(3 values above the chart, up to 26.1)' for the x label, or ''."""
    parts = [f"{len(off)} value{'s' * (len(off) > 1)} {side} the chart, {to} {end(off):.3g}"
             for off, side, to, end in (([x for x in values if x > hi], "above", "up to", max),
                                        ([x for x in values if x < lo], "below", "down to", min))
             if off]
    return f"\n({'; '.join(parts)})" if parts else ""


def _points(hist: list[dict], key: str) -> tuple[str, list[tuple[float, float]]]:
    """The split drawn for a member (val, else train) and its (epoch, value) points."""
    split = "val" if any(r.get(f"val_{key}") not in (None, "") for r in hist) else "train"
    pts = []
    for r in hist:
        try:
            pts.append((float(r["epoch"]), float(r[f"{split}_{key}"])))
        except (KeyError, TypeError, ValueError):  # no value this epoch (or a blank CSV cell)
            continue
    return split, [(e, y) for e, y in pts if np.isfinite(y)]


def overlay_figure(curves: Mapping[str, list[dict]], title: str, best: str | None = None,
                   mean: bool = False, ranked: Sequence[str] | None = None,
                   states: Mapping[str, str] | None = None) -> plt.Figure:
    """Validation loss and accuracy per epoch of every member, legend outside the axes.

    `ranked` orders the members best first (default: as given) and decides who is coloured;
    `states` marks members not run to the end ("pruned", "fail") as dotted and faded.
    """
    states = states or {}
    order = [n for n in (ranked or ()) if n in curves]
    order += [n for n in curves if n not in order]
    order.sort(key=lambda n: (n != best, states.get(n, "complete") in FADED))  # stable
    styles = _styles(order, best, states)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    named: dict[str, object] = {}  # member -> its line, for the legend
    means: dict[str, object] = {}
    for ax, key, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        stacked: dict[float, list[float]] = {}
        solid, every, keep = [], [], []
        for name in reversed(order):  # the best last: on top
            split, pts = _points(curves[name], key)
            if not pts:
                continue
            s = styles[name]
            ep, ys = zip(*pts, strict=True)
            train = split == "train" and s.ls != ":"
            (line,) = ax.plot(ep, ys, "--" if train else s.ls, color=s.color, lw=s.lw,
                              alpha=0.45 if mean and name != best else s.alpha,
                              marker="o" if len(ep) < 30 and s.label else None, ms=3,
                              zorder=s.zorder)
            if s.label:
                line.set_label(s.label + (" [train]" if train else ""))
                named.setdefault(name, line)
            every += ys
            if s.ls != ":":
                solid += ys
            if name == best:
                keep += ys
            for e, y in pts:
                stacked.setdefault(e, []).append(y)
        if mean and stacked:
            ep = sorted(stacked)
            (line,) = ax.plot(ep, [float(np.mean(stacked[e])) for e in ep], "k-", lw=2.6,
                              label=f"mean of {len(curves)}", zorder=5)
            means.setdefault(line.get_label(), line)
        lo, hi = robust_limits(solid or every, keep)
        ax.set_ylim(lo, hi)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch" + _off_chart(every, lo, hi))
        ax.set_ylabel(f"validation {label}")
        ax.set_title(f"Validation {label}")
        ax.grid(alpha=0.3)
    handles = [named[n] for n in order if n in named]
    handles += [*means.values(), *_summed(styles)]
    if handles:
        # outside the axes: a legend inside would hide the curves it names
        fig.legend(handles=handles, loc="upper left", fontsize=7, frameon=False,
                   bbox_to_anchor=(axes[1].get_position().x1 + 0.01, axes[1].get_position().y1))
    fig.suptitle(title)
    return fig


def _summed(styles: Mapping[str, _Style]) -> list[object]:
    """Legend entries for the members drawn without a label of their own."""
    from matplotlib.lines import Line2D

    out = []
    for ls, what in (("-", "other"), (":", "other pruned or failed")):
        n = sum(s.label is None and s.ls == ls for s in styles.values())
        if n:
            out.append(Line2D([], [], color=OTHER_COLOR, ls=ls, lw=0.8, label=f"{n} {what}"))
    return out
