"""How much the leaks flatter a model: accuracy on each held-out split with and without them."""

from __future__ import annotations

import numpy as np
import torch

from cnnlab.doctor.pool import Pool
from cnnlab.errors import name_list


def leak_effect(weights: object, pool: Pool, leaks: list[dict]) -> dict:
    """{split: {n, accuracy, n_leaked, accuracy_leaked, accuracy_without_leaks}} for val/test.
    `weights`: a checkpoint path or an already loaded Predictor."""
    from cnnlab.evaluate.predictor import Predictor

    model = weights if isinstance(weights, Predictor) else Predictor.load(weights)
    weights = model.path or weights
    if list(model.classes) != list(pool.classes):
        return {"skipped": f"{weights}: the model's classes ({name_list(model.classes)}) "
                           f"differ from the data's ({name_list(pool.classes)})"}
    leaked = {leak["index"] for leak in leaks}
    out: dict = {"weights": str(weights)}
    for name in ("val", "test"):
        items = pool.where(name)
        items = items[pool.labels[items] >= 0]
        if not len(items):
            continue
        images = torch.stack([torch.from_numpy(pool.image(int(i))) for i in items])
        pred = model.logits(images).argmax(1).numpy()
        right = pred == pool.labels[items]
        mask = np.array([int(i) in leaked for i in items], dtype=bool)
        out[name] = {"n": int(len(items)), "accuracy": float(right.mean()),
                     "n_leaked": int(mask.sum()),
                     "accuracy_leaked": float(right[mask].mean()) if mask.any() else None,
                     "accuracy_without_leaks": float(right[~mask].mean())
                     if (~mask).any() else None}
    return out
