"""cnnlab: from a set of images to a trained, measured and explained image classifier."""

from __future__ import annotations

from cnnlab.api import data, load, train
from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

__all__ = ["CnnlabError", "ImageClassifier", "data", "load", "train", "__version__"]


def __getattr__(name: str):  # noqa: ANN202
    # The estimator pulls in scikit-learn's base classes; import it only when asked for.
    if name == "ImageClassifier":
        from cnnlab.estimator import ImageClassifier

        return ImageClassifier
    raise AttributeError(name)
