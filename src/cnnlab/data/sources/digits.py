"""scikit-learn's 8x8 digits: the built-in set read when no data path is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnlab.data.imageset import ImageSet
from cnnlab.data.options import LoadOptions, Progress
from cnnlab.data.sources.arrayset import fit_size, from_arrays
from cnnlab.data.sources.source import Source


def _read(path: Path | None, opts: LoadOptions, progress: Progress) -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images * (255.0 / 16.0)).round().astype(np.uint8)
    data = from_arrays({"": (x, d.target)}, [str(i) for i in range(10)], "digits")
    data.meta["name"] = "digits"
    if opts.image_size or opts.channels:  # built-in digits honour --image-size too
        fit_size(data, opts, "digits")
    return data


SOURCE = Source("digits", _read, uses_path=False)
