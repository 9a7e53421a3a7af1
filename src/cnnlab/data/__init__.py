"""Data layer: every source becomes an ImageSet (uint8 [N,C,H,W], labels, classes, ids)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnlab.data.imageset import DataSplits, ImageSet
    from cnnlab.data.load import LoadOptions, load_data

__all__ = ["DataSplits", "ImageSet", "LoadOptions", "load_data"]
_MODULE = {"DataSplits": "imageset", "ImageSet": "imageset", "LoadOptions": "load",
           "load_data": "load"}


def __getattr__(name: str) -> Any:
    """The layer's names on first use: `import cnnlab.data.options` (the settings read the data
    defaults from it for every --help) must not import torch through this package."""
    if name in _MODULE:
        return getattr(importlib.import_module(f"cnnlab.data.{_MODULE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
