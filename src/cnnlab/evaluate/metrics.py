"""Per-split metrics computed with sklearn.metrics."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

from cnnlab.evaluate.calibration import ece


def _clean(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str],
                    loss: float | None = None, positive_class: str | None = None) -> dict:
    """accuracy, loss, per-class accuracy, precision/recall/F1, AUROC and confusion matrix."""
    y_true = np.asarray(y_true)
    keep = y_true >= 0
    y_true, probs = y_true[keep], np.asarray(probs, dtype=np.float64)[keep]
    k = len(classes)
    labels = list(range(k))
    y_pred = probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)
    pos = classes.index(positive_class) if positive_class in classes else 1  # two classes only
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels) if len(y_true) else \
        np.zeros((k, k), dtype=int)
    support = cm.sum(1)
    per_class = {c: (float(cm[i, i] / support[i]) if support[i] else None)
                 for i, c in enumerate(classes)}
    out: dict = {"n": int(len(y_true)), "accuracy": float((y_pred == y_true).mean())
                 if len(y_true) else None, "loss": _clean(loss) if loss is not None else None,
                 "per_class_accuracy": per_class}
    if k == 2:
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, pos_label=pos, average="binary", zero_division=0)
        out["average"] = f"binary (positive class: {classes[pos]})"
    else:
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average="macro", zero_division=0)
        out["average"] = "macro"
    pc, rc, fc, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels,
                                                        average=None, zero_division=0)
    out.update(precision=float(p), recall=float(r), f1=float(f))
    out["per_class"] = {c: {"precision": float(pc[i]), "recall": float(rc[i]),
                            "f1": float(fc[i]), "support": int(support[i]),
                            "accuracy": per_class[c]} for i, c in enumerate(classes)}
    out["auroc"] = _auroc(y_true, probs, k, pos)
    out["ece"] = ece(probs, y_true) if len(y_true) else None  # 15 bins (evaluate/calibration)
    out["confusion_matrix"] = cm.astype(int).tolist()
    out["balanced_accuracy"] = float(np.mean([v for v in per_class.values() if v is not None])) \
        if any(v is not None for v in per_class.values()) else None
    return out


def _auroc(y_true: np.ndarray, probs: np.ndarray, k: int, pos: int) -> float | None:
    present = np.unique(y_true)
    if len(present) < 2:
        return None  # undefined with one class present
    try:
        if k == 2:
            return float(skm.roc_auc_score((y_true == pos).astype(int), probs[:, pos]))
        if len(present) < k:
            # One-vs-rest over the classes that occur, so a missing class does not void it.
            scores = [skm.roc_auc_score((y_true == c).astype(int), probs[:, c]) for c in present]
            return float(np.mean(scores))
        p = probs / np.clip(probs.sum(1, keepdims=True), 1e-12, None)
        return float(skm.roc_auc_score(y_true, p, multi_class="ovr", average="macro",
                                       labels=list(range(k))))
    except ValueError:
        return None


def baselines(train_labels: np.ndarray, eval_labels: np.ndarray, k: int) -> dict:
    """Accuracy of guessing uniformly at random and of always guessing the majority class."""
    train_labels = train_labels[train_labels >= 0]
    eval_labels = eval_labels[eval_labels >= 0]
    if not len(train_labels) or not len(eval_labels):
        return {"random": None, "majority": None}
    major = int(np.bincount(train_labels, minlength=k).argmax())
    return {"random": 1.0 / k, "majority": float((eval_labels == major).mean())}
