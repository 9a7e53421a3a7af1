"""Failure modes (CS 475 1.8): correctly and wrongly classified items, and the top-loss items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.errors import DataError


@dataclass
class Failures:
    """Predictions of a labeled set and the items picked for the gallery."""

    probs: np.ndarray  # [N, K]
    labels: np.ndarray  # [N]
    losses: np.ndarray  # per-item cross-entropy
    correct: np.ndarray  # indices of sampled correct items
    wrong: np.ndarray  # indices of sampled wrong items
    top_loss: np.ndarray  # indices of the highest-loss items, highest first

    @property
    def preds(self) -> np.ndarray:
        """Predicted class per item."""
        return self.probs.argmax(1)

    def rows(self, ids: list[str], classes: list[str]) -> list[dict]:
        """One table row per picked item: kind, id, true, predicted, probabilities, loss."""
        out = []
        for kind, idx in (("correct", self.correct), ("wrong", self.wrong),
                          ("top_loss", self.top_loss)):
            for rank, i in enumerate(idx, 1):
                t, p = int(self.labels[i]), int(self.preds[i])
                out.append({"kind": kind, "rank": rank, "index": int(i), "id": ids[i],
                            "true": classes[t], "pred": classes[p],
                            "p_true": float(self.probs[i, t]), "p_pred": float(self.probs[i, p]),
                            "loss": float(self.losses[i])})
        return out


def find_failures(probs: np.ndarray, labels: np.ndarray, n: int = 10, seed: int = 0,
                  cls: int | None = None) -> Failures:
    """Pick n correct and n wrong items at random (seeded) and the n highest-loss items."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if not (labels >= 0).any():
        raise DataError("failure analysis needs labeled images (the data has no labels)")
    keep = labels >= 0 if cls is None else labels == cls
    safe = np.where(labels >= 0, labels, 0)
    losses = -np.log(np.clip(probs[np.arange(len(labels)), safe], 1e-12, None))
    losses = np.where(labels >= 0, losses, np.nan)
    pred = probs.argmax(1)
    rng = np.random.default_rng(seed)
    ok = np.flatnonzero(keep & (pred == labels))
    bad = np.flatnonzero(keep & (pred != labels))
    correct = np.sort(rng.permutation(ok)[:n])
    wrong = np.sort(rng.permutation(bad)[:n])
    cand = np.flatnonzero(keep)
    # Stable sort of the negated loss: ties keep input order, so the pick is deterministic.
    top = cand[np.argsort(-losses[cand], kind="stable")[:n]]
    return Failures(probs, labels, losses, correct, wrong, top)


def analyze(predictor: object, data: ImageSet, n: int = 10, seed: int = 0,
            cls: int | None = None) -> Failures:
    """Predict a labeled ImageSet with `predictor` and pick the gallery items."""
    probs = predictor.probabilities(data.images).numpy()  # as predicted: TTA, temperature
    return find_failures(probs, data.labels.numpy(), n, seed, cls)
