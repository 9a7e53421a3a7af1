"""ROC and precision-recall curves, and the decision-threshold table of binary tasks.

A classifier that ranks well (high AUROC) can still miss a rare class at the default 0.5
threshold; these figures and the table show where another threshold would land.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn import metrics as skm

from cnnlab.report.plots import plt, save_figure

GRID = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 ... 0.95
MAX_LEGEND = 12  # classes named in the one-vs-rest legend


@dataclass
class ThresholdRow:
    """Scores of 'positive when p >= threshold' on the labeled split."""

    threshold: float
    precision: float
    recall: float
    f1: float
    balanced_accuracy: float
    predicted_positive: int
    best: tuple[str, ...] = ()  # "f1", "balanced_accuracy": this threshold maximises them


def positive_index(classes: list[str], positive_class: str | None) -> int:
    """The positive class of a binary task: the configured one, else the second (as metrics)."""
    return classes.index(positive_class) if positive_class in classes else 1


def score_at(y: np.ndarray, score: np.ndarray, t: float) -> ThresholdRow:
    """Precision, recall, F1 and balanced accuracy of `score >= t` against y (0/1)."""
    pred = score >= t
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    tn = int((~pred & (y == 0)).sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    spec = tn / (tn + fp) if tn + fp else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return ThresholdRow(float(t), prec, rec, f1, (rec + spec) / 2, int(pred.sum()))


def best_thresholds(y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """The thresholds that maximise F1 and balanced accuracy over every distinct score."""
    out: dict[str, float] = {}
    if len(np.unique(y)) < 2:
        return out
    p, r, t = skm.precision_recall_curve(y, score)
    f1 = np.where(p[:-1] + r[:-1] > 0, 2 * p[:-1] * r[:-1] / np.maximum(p[:-1] + r[:-1], 1e-12),
                  0)
    out["f1"] = float(t[int(np.argmax(f1))])
    fpr, tpr, tr = skm.roc_curve(y, score)
    ok = np.isfinite(tr)
    bal = (tpr + 1 - fpr) / 2
    out["balanced_accuracy"] = float(tr[ok][int(np.argmax(bal[ok]))])
    return out


def threshold_table(y: np.ndarray, score: np.ndarray) -> list[ThresholdRow]:
    """Rows for 0.05 ... 0.95 plus the best-F1 and best-balanced-accuracy thresholds."""
    best = best_thresholds(y, score)
    rows = {t: score_at(y, score, t) for t in GRID}
    for key, t in best.items():
        row = rows.get(t) or score_at(y, score, t)
        row.best = (*row.best, key)
        rows[t] = row
    return [rows[t] for t in sorted(rows)]


def roc_pr_figure(labels: np.ndarray, probs: np.ndarray, classes: list[str], path: Path,
                  title: str, positive_class: str | None = None) -> tuple[Path, dict]:
    """PNG of ROC (left) and precision-recall (right); binary or one-vs-rest per class."""
    keep = labels >= 0
    y, probs = labels[keep], probs[keep]
    k = len(classes)
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.2))
    info: dict = {}
    if k == 2:
        pos = positive_index(classes, positive_class)
        yb, s = (y == pos).astype(int), probs[:, pos]
        curves = [(classes[pos], yb, s)]
        info["positive"] = classes[pos]
    else:
        curves = [(c, (y == i).astype(int), probs[:, i]) for i, c in enumerate(classes)]
    cmap = plt.get_cmap("tab10" if len(curves) <= 10 else "tab20")
    aucs, aps = {}, {}
    for i, (name, yb, s) in enumerate(curves):
        if yb.min() == yb.max():  # a class absent from the split has no curve
            continue
        fpr, tpr, _ = skm.roc_curve(yb, s)
        prec, rec, _ = skm.precision_recall_curve(yb, s)
        aucs[name], aps[name] = float(skm.auc(fpr, tpr)), float(
            skm.average_precision_score(yb, s))
        lw = 2 if len(curves) == 1 else 1.2
        label = f"{name} (AUC {aucs[name]:.3f})" if len(curves) <= MAX_LEGEND else None
        ax_roc.plot(fpr, tpr, lw=lw, color=cmap(i % cmap.N), label=label)
        ax_pr.step(rec, prec, where="post", lw=lw, color=cmap(i % cmap.N),
                   label=f"{name} (AP {aps[name]:.3f})" if label else None)
        if len(curves) == 1:  # binary: mark the default and the best thresholds
            base = yb.mean()
            ax_pr.axhline(base, ls=":", color="#8c959f", label=f"chance ({base:.3f})")
            marks = [(t, "o" if key == "f1" else "s",
                      {"ms": 7, "mfc": "none", "color": "#cf222e"},
                      f"{'best F1' if key == 'f1' else 'best balanced acc.'} @ {t:.3g}")
                     for key, t in best_thresholds(yb, s).items()]
            marks.append((0.5, "x", {"ms": 8, "color": "#24292f"}, "threshold 0.5 (argmax)"))
            for t, mark, style, what in marks:
                r = score_at(yb, s, t)
                spec = 2 * r.balanced_accuracy - r.recall
                ax_roc.plot(1 - spec, r.recall, mark, mew=2, label=what, **style)
                ax_pr.plot(r.recall, r.precision, mark, mew=2, label=what, **style)
    ax_roc.plot([0, 1], [0, 1], ls="--", color="#8c959f", lw=1)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate (recall)",
               xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax_pr.set(xlabel="recall", ylabel="precision", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    one_vs_rest = "" if k == 2 else " (one-vs-rest)"
    macro = f", macro AUC {np.mean(list(aucs.values())):.3f}" if k > 2 and aucs else ""
    ax_roc.set_title(f"ROC{one_vs_rest}{macro}")
    ax_pr.set_title(f"Precision-recall{one_vs_rest}")
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5, loc="lower right" if ax is ax_roc else "lower left")
    fig.suptitle(title)
    info.update(auc=aucs, ap=aps)
    return save_figure(fig, path), info
