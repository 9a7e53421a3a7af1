"""cnnlab: from a set of images to a trained, measured and explained image classifier."""

from __future__ import annotations

import sys
import types

from cnnlab.errors import CnnlabError
from cnnlab.version import __version__

__all__ = ["CnnlabError", "ImageClassifier", "data", "load", "show_batch", "train",
           "__version__"]
# Imported on first use (PEP 562), so `import cnnlab.cli` and `cnnlab --help` never load torch.
_LAZY = ("ImageClassifier", "data", "load", "show_batch", "train")


def __getattr__(name: str):  # noqa: ANN202
    if name in ("data", "load", "train"):  # torch, the data layer and the training code
        from cnnlab.api import data, load, train

        value = {"data": data, "load": load, "train": train}[name]
    elif name == "ImageClassifier":  # scikit-learn's base classes
        from cnnlab.estimator import ImageClassifier as value
    elif name == "show_batch":  # matplotlib's figure machinery: only when a notebook asks
        from cnnlab.notebook import show_batch as value
    else:
        raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")
    globals()[name] = value  # later lookups find it without coming here
    return value


def __dir__() -> list[str]:
    # Lazy names exist for tab completion and dir() even before their first use.
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """cnnlab's module type: the subpackages cnnlab.data and cnnlab.train never take the names
    of the functions cnnlab.data() and cnnlab.train()."""

    def __setattr__(self, name: str, value: object) -> None:
        # Importing a subpackage binds it on its parent; the API functions own these names,
        # as they did when this file imported them eagerly (after the subpackages).
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
