"""Likely label errors: out-of-sample probabilities from k-fold training, then confident learning.

A multinomial logistic regression on the shared feature vectors is fast (seconds for 10,000
images) and, being trained on the other folds only, gives each item a probability it never saw
its own label for; cleanlab's find_label_issues ranks the items whose given label disagrees.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from cnnlab.doctor.features import standardised
from cnnlab.errors import CnnlabError

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
        clf = LogisticRegression(C=0.5, max_iter=300)
        with warnings.catch_warnings():
            # A few hundred iterations are plenty for a ranking; full convergence is not needed.
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(features[fit_idx], labels[fit_idx])
        probs[np.ix_(held, clf.classes_)] = clf.predict_proba(features[held])
        if tick is not None:
            tick(1)
    return probs


def find_label_issues(features: np.ndarray, labels: np.ndarray, n_classes: int,
                      folds: int = 5, seed: int = 0,
                      tick: Callable[[int], None] | None = None) -> tuple[list[dict], dict]:
    """Ranked issues [{index, given, suggested, quality}] (worst first) and a summary."""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ranked = cl_find(y, probs, return_indices_ranked_by="self_confidence")
        quality = get_label_quality_scores(y, probs)
    issues = []
    for r in np.asarray(ranked, dtype=int).tolist():
        sugg = int(probs[r].argmax())
        issues.append({"index": int(labeled[r]), "given": int(present[y[r]]),
                       "suggested": int(present[sugg]), "quality": float(quality[r]),
                       "p_given": float(probs[r, y[r]]), "p_suggested": float(probs[r, sugg])})
    summary = {"checked": int(len(labeled)), "flagged": len(issues),
               "model": "logistic regression, out-of-sample over "
                        f"{max(2, min(folds, int(np.bincount(y).min())))} folds",
               "out_of_sample_accuracy": accuracy}
    return issues, summary
