"""`cnnlab.show_batch`: a grid of images with their labels, for a first look in a notebook.

The figure is built without pyplot (no global state, nothing left open) and knows how to
display itself in Jupyter whatever matplotlib backend the session uses.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

OK, BAD = "#1a7f37", "#cf222e"


class BatchFigure(Figure):
    """A matplotlib Figure that renders itself as PNG in Jupyter (`_repr_png_`)."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        self.savefig(buf, format="png", dpi=90, bbox_inches="tight")
        return buf.getvalue()


def _display(img: np.ndarray) -> np.ndarray:
    """uint8 [C,H,W] -> [H,W] or [H,W,3] floats in [0,1]."""
    a = np.asarray(img).astype(np.float32) / 255.0
    return a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))


def _resolve(data_or_run: object, split: str | None) -> tuple[object, object, str]:
    """(ImageSet, Predictor or None, title) from a DataSplits, ImageSet, RunResult or path."""
    from cnnlab.data.imageset import DataSplits, ImageSet
    from cnnlab.errors import DataError

    predictor = None
    if isinstance(data_or_run, (str, Path)):
        path = Path(data_or_run)
        if (path / "config.yaml").is_file():  # a run folder: its data, with its predictions
            from cnnlab.api import load

            predictor = load(path)
            from cnnlab.report.context import reload_run

            splits, _ = reload_run(path, predictor.config, None, predictor, notes := [])
            if splits is None:
                raise DataError(f"{path}: {notes[-1] if notes else 'cannot reload its data'}")
            data_or_run = splits
        else:
            from cnnlab.api import data as read

            data_or_run = read(path)
    elif hasattr(data_or_run, "run_dir") and hasattr(data_or_run, "config"):  # a RunResult
        return _resolve(data_or_run.run_dir, split or "test")
    if isinstance(data_or_run, DataSplits):
        names = [n for n, s in data_or_run.items() if len(s)]
        name = split or ("test" if predictor is not None and "test" in names else "train")
        chosen = data_or_run.get(name)
        if chosen is None or not len(chosen):
            raise DataError(f"no {name} split to show (have {', '.join(names)})")
        return chosen, predictor, f"{data_or_run.source or 'data'}: {name} split"
    if isinstance(data_or_run, ImageSet):
        return data_or_run, predictor, str(data_or_run.meta.get("name", "images"))
    raise TypeError("show_batch takes a DataSplits, ImageSet, RunResult, run folder or data path,"
                    f" not {type(data_or_run).__name__}")


def show_batch(data_or_run: object, n: int = 16, split: str | None = None, seed: int = 0,
               cols: int | None = None) -> BatchFigure:
    """Draw n images (seeded pick) with their labels; for a run, true vs predicted, coloured."""
    data, predictor, title = _resolve(data_or_run, split)
    n = max(1, min(int(n), len(data), 100))
    idx = np.sort(np.random.default_rng(seed).permutation(len(data))[:n])
    images = data.images[idx]
    labels = data.labels[idx].tolist()
    classes = list(data.classes) or [str(i) for i in range(max(labels) + 1)]
    preds = predictor.predict(images) if predictor is not None else None
    cols = cols or min(8, n)
    rows = math.ceil(n / cols)
    fig = BatchFigure(figsize=(1.5 * cols, 1.75 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for k, ax in enumerate(axes):
        ax.axis("off")
        if k >= n:
            continue
        img = _display(images[k].numpy())
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1,
                  interpolation="nearest" if max(img.shape[:2]) < 48 else "antialiased")
        true = classes[labels[k]] if labels[k] >= 0 else "?"
        if preds is None:
            ax.set_title(true, fontsize=9)
        else:
            p = classes[int(preds[k])]
            ok = labels[k] < 0 or int(preds[k]) == labels[k]
            ax.set_title(f"true {true}\npred {p}", fontsize=8, color=OK if ok else BAD)
    fig.suptitle(title + ("" if preds is None else " (green = correct, red = wrong)"),
                 fontsize=10)
    fig.tight_layout()
    return fig
