"""Split health: class counts per split, missing classes, and train-vs-held-out shift scores."""

from __future__ import annotations

import warnings

import numpy as np

from cnnlab.doctor.features import standardised
from cnnlab.doctor.pool import Pool
from cnnlab.report.summary import imbalance

SHIFT_SOME = 0.6  # cross-validated AUROC at or above this: the splits are told apart
SHIFT_STRONG = 0.75
MAX_PER_SIDE = 3000  # a balanced subsample keeps the shift classifier fast on big sets


def class_balance(pool: Pool) -> dict:
    """Counts per class per split, classes missing from a split, training imbalance."""
    counts = {}
    for name in pool.sets:
        lab = pool.labels[pool.where(name)]
        counts[name] = np.bincount(lab[lab >= 0], minlength=len(pool.classes)).tolist()
    missing = {name: [pool.classes[k] for k, n in enumerate(c) if n == 0]
               for name, c in counts.items() if any(n == 0 for n in c) and sum(c)}
    unlabeled = {name: int((pool.labels[pool.where(name)] < 0).sum()) for name in pool.sets}
    flag = imbalance(counts["train"], pool.classes) if "train" in counts else None
    if flag and flag["ratio"] == float("inf"):
        flag["ratio"] = None  # JSON has no infinity; the smallest class is empty
    return {"classes": list(pool.classes), "counts": counts, "missing": missing,
            "unlabeled": {k: v for k, v in unlabeled.items() if v}, "imbalance": flag}


def shift_auroc(a: np.ndarray, b: np.ndarray, folds: int = 5, seed: int = 0) -> float | None:
    """Cross-validated AUROC of a classifier telling rows of `a` from rows of `b` (0.5 = none)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(seed)
    n = min(len(a), len(b), MAX_PER_SIDE)
    if n < 10:
        return None
    # Equal numbers from both sides, so the score measures shift, not the split sizes.
    a = a[rng.choice(len(a), n, replace=False)]
    b = b[rng.choice(len(b), n, replace=False)]
    x = standardised(np.concatenate([a, b]))
    y = np.r_[np.zeros(n), np.ones(n)]
    cv = StratifiedKFold(min(folds, n), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        p = cross_val_predict(LogisticRegression(C=0.1, max_iter=300), x, y, cv=cv,
                              method="predict_proba")[:, 1]
    return float(roc_auc_score(y, p))


def split_shift(pool: Pool, features: np.ndarray, seed: int = 0) -> dict:
    """Shift score of train against each held-out split, with a verdict."""
    out: dict = {"method": "Cross-validated AUROC of a logistic regression telling train "
                           "features from the other split's (0.5 = no shift, 1 = disjoint)"}
    train = pool.where("train")
    for name in ("val", "test"):
        other = pool.where(name)
        if not len(train) or not len(other):
            continue
        auc = shift_auroc(features[train], features[other], seed=seed)
        if auc is None:
            continue
        verdict = "strong shift" if auc >= SHIFT_STRONG else "some shift" \
            if auc >= SHIFT_SOME else "no shift detected"
        out[f"train_vs_{name}"] = {"auroc": auc, "verdict": verdict, "n": int(len(other))}
    return out
