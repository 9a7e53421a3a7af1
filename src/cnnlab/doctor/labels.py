"""Likely label errors: out-of-sample probabilities from k-fold training, then confident learning.

A multinomial logistic regression on the shared feature vectors is fast (seconds for 10,000
images) and, being trained on the other folds only, gives each item a probability it never saw
its own label for; cleanlab's find_label_issues ranks the items whose given label disagrees.

Those probabilities only separate wrong labels from hard images when the model is good: near
chance, every image is "disagreed with" and confident learning flags a third of the set. So the
check first judges itself (see `judge`) and names no label error when it cannot earn trust.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from cnnlab.doctor.features import standardised
from cnnlab.errors import CnnlabError

# The check is reliable when its out-of-sample accuracy covers at least this share of the way
# from the majority-class rate to 1 (2 balanced classes: 0.80; 10 classes: 0.64). Measured on
# synthetic classes with 5-20% planted flips (docs/doctor.md): between 0.5 and 0.6 of the way
# the flags reached 4.3x the planted errors (10 classes, 5% flipped); from 0.6 on, at most
# 2.1x, with at least 63% of the planted ones found.
RELIABLE_SHARE = 0.6
# Strong regularisation: with flipped labels C=0.5 overfit them (digits with 5% flipped:
# accuracy 0.876 vs 0.895 at 0.05; photo-like textures 0.837 vs 0.867 on backbone features).
LABEL_C = 0.05
MISSING_EXTRA = ("label checks need the cleanlab package: pip install cleanlab (or pip "
                 "install -e '.[doctor]' in the cnnlab clone)")


def require_cleanlab() -> None:
    """Fail with one line when the doctor extra is not installed."""
    try:
        import cleanlab  # noqa: F401
    except ImportError:
        raise CnnlabError(MISSING_EXTRA) from None


def out_of_sample_probs(features: np.ndarray, labels: np.ndarray, n_classes: int,
                        folds: int = 5, seed: int = 0,
                        tick: Callable[[int], None] | None = None) -> np.ndarray:
    """Probabilities [N, K] of each item from a model trained on the other folds."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    probs = np.zeros((len(labels), n_classes), dtype=np.float64)
    smallest = int(np.bincount(labels, minlength=n_classes)[np.unique(labels)].min())
    k = max(2, min(folds, smallest))
    splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    for fit_idx, held in splitter.split(features, labels):
        clf = LogisticRegression(C=LABEL_C, max_iter=300)
        with warnings.catch_warnings():
            # A few hundred iterations are plenty for a ranking; full convergence is not needed.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(features[fit_idx], labels[fit_idx])
        probs[np.ix_(held, clf.classes_)] = clf.predict_proba(features[held])
        if tick is not None:
            tick(1)
    return probs


def judge(accuracy: float, majority: float) -> dict:
    """{reliable, needed_accuracy, reason}: is `accuracy` far enough above `majority`?"""
    needed = majority + RELIABLE_SHARE * (1.0 - majority)
    if accuracy >= needed:
        return {"reliable": True, "needed_accuracy": round(needed, 3), "reason": None}
    return {"reliable": False, "needed_accuracy": round(needed, 3),
            "reason": f"out-of-sample accuracy {accuracy:.3f} is too close to the "
                      f"{majority:.3f} of always guessing the largest class (needs "
                      f"{needed:.2f}): wrong labels cannot be told from hard images"}


def find_label_issues(features: np.ndarray, labels: np.ndarray, n_classes: int,
                      folds: int = 5, seed: int = 0,
                      tick: Callable[[int], None] | None = None) -> tuple[list[dict], dict]:
    """Ranked issues [{index, given, suggested, quality}] (worst first) and a summary.

    The summary says whether the check is reliable; when it is not, no issue is returned.
    """
    require_cleanlab()
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    labeled = np.flatnonzero(labels >= 0)
    present = np.unique(labels[labeled])
    if len(labeled) < 10 or len(present) < 2:
        return [], {"checked": int(len(labeled)), "skipped": "too few labeled images"}
    # cleanlab wants labels 0..K-1 all present: compact the classes that occur.
    remap = {int(c): k for k, c in enumerate(present)}
    y = np.array([remap[int(v)] for v in labels[labeled]])
    probs = out_of_sample_probs(standardised(features[labeled]), y, len(present), folds, seed, tick)
    probs = np.clip(probs, 1e-6, 1.0)
    probs /= probs.sum(1, keepdims=True)
    accuracy = float((probs.argmax(1) == y).mean())
    majority = float(np.bincount(y).max() / len(y))
    verdict = judge(accuracy, majority)
    ranked: list[int] = []
    if verdict["reliable"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # "both": flagged by prune-by-noise-rate and by the confident joint; on the
            # synthetic sets it cut the flags on 10 classes by up to 20% for the same recall.
            ranked = np.asarray(cl_find(y, probs, filter_by="both",
                                        return_indices_ranked_by="self_confidence"),
                                dtype=int).tolist()
            quality = get_label_quality_scores(y, probs)
    issues = []
    for r in ranked:
        sugg = int(probs[r].argmax())
        issues.append({"index": int(labeled[r]), "given": int(present[y[r]]),
                       "suggested": int(present[sugg]), "quality": float(quality[r]),
                       "p_given": float(probs[r, y[r]]), "p_suggested": float(probs[r, sugg])})
    summary = {"checked": int(len(labeled)), "flagged": len(issues),
               "model": "logistic regression, out-of-sample over "
                        f"{max(2, min(folds, int(np.bincount(y).min())))} folds",
               "out_of_sample_accuracy": accuracy, "majority_rate": round(majority, 3),
               **verdict}
    return issues, summary
