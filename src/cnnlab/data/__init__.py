"""Data layer: every source becomes an ImageSet (uint8 [N,C,H,W], labels, classes, ids)."""

from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.data.load import LoadOptions, load_data

__all__ = ["DataSplits", "ImageSet", "LoadOptions", "load_data"]
