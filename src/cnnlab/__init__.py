"""cnnlab: from a set of images to a trained, measured and explained image classifier."""

from __future__ import annotations

from cnnlab.api import data, load, train
from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

__all__ = ["CnnlabError", "ImageClassifier", "data", "load", "show_batch", "train",
           "__version__"]
_LAZY = ("ImageClassifier", "show_batch")


def __getattr__(name: str):  # noqa: ANN202
    # The estimator pulls in scikit-learn's base classes; import it only when asked for.
    if name == "ImageClassifier":
        from cnnlab.estimator import ImageClassifier

        return ImageClassifier
    if name == "show_batch":  # matplotlib's figure machinery: only when a notebook asks
        from cnnlab.notebook import show_batch

        return show_batch
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    # Lazy names exist for tab completion and dir() even before their first use.
    return sorted(set(globals()) | set(_LAZY))
