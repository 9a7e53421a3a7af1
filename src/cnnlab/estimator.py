"""cnnlab.ImageClassifier: a scikit-learn estimator that trains with cnnlab's own training code.

`fit` turns the input into an ImageSet and calls run_training (the code behind `cnnlab train`)
on a temporary run folder, or on `out` when given; the fitted model lives in the estimator, so
it pickles, clones and works in cross_val_score, GridSearchCV and Pipeline.

Accepted X:
- images: arrays [N,H,W], [N,H,W,C] or [N,C,H,W] (any numeric dtype);
- a list (or 1-D array) of image file paths;
- 2-D tabular arrays [N,D]: each row is one image, unflattened with `image_shape` when given,
  else as a square grayscale image of side ceil(sqrt(D)) (zero padded). This is what lets the
  generic scikit-learn checks run; it is also how flattened MNIST rows [N,784] come back as
  28x28 images.

Pixel values are scaled to 0..255 with a range fixed at fit time: uint8 stays as is, floats in
[0,1] are multiplied by 255, values in [0,255] are kept, anything else is min-max scaled with the
training data's minimum and maximum (the same mapping is used by predict: it never depends on
the values of the batch predicted; values beyond the fitted range are clipped, with a warning
giving the count).
"""

from __future__ import annotations

import inspect
import math
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

try:
    from sklearn.utils.validation import validate_data
except ImportError:  # scikit-learn < 1.6 had it as a method

    def validate_data(est, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN201
        """scikit-learn < 1.6: the private method of the same job."""
        return est._validate_data(*args, **kw)

from cnnlab import run
from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.data.sources.common import adjust, to_uint8_nchw
from cnnlab.data.splits import stratified_split
from cnnlab.data.value_range import clip_message, scale_to_uint8
from cnnlab.models import get_spec
from cnnlab.models.tta import average_probs, parse_tta
from cnnlab.settings import SETTINGS, resolve, without_recipe_defaults


def _is_paths(X: object) -> bool:
    if isinstance(X, (str, Path)):
        raise ValueError("ImageClassifier: pass a list of image file paths, not a single path")
    if isinstance(X, np.ndarray):
        return X.ndim == 1 and X.dtype.kind in "OUS" and len(X) > 0 and \
            all(isinstance(p, (str, Path)) for p in X)
    if isinstance(X, (list, tuple)) and X:
        return all(isinstance(p, (str, Path)) for p in X)
    return False


# The estimator's parameters are the settings of `cnnlab train` (same names, defaults and
# checks) minus those about files and run folders, plus three of its own.
_SKIP = {"format", "task", "image_dir", "path_column", "label_column", "numeric_column",
         "partition_column", "task_column", "test_split", "out", "runs_dir", "name", "report",
         "log_every", "doctor", "keep_every", "layout", "split_seed"}
# Different on purpose: scikit-learn hands fit() the training data, so nothing is held out for
# validation unless asked (cross_val_score and GridSearchCV do their own splitting).
_OWN_DEFAULTS = {"val_split": 0.0}
PARAMS: dict[str, object] = {
    # scikit-learn allows no list or dict defaults: those settings default to None here
    **{n: _OWN_DEFAULTS.get(n, None if isinstance(s.default, (dict, list)) else s.default)
       for n, s in SETTINGS.items() if n not in _SKIP},
    "image_shape": None,  # rows of 2-D X are reshaped to this (else padded squares)
    "out": None,  # keep the run folder here (None: a temporary folder, deleted after fit)
    "verbose": False,
}


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """A cnnlab image classifier with the scikit-learn estimator API (fit/predict/score).

    Parameters are `cnnlab train`'s settings (model, epochs, lr, pretrained, freeze,
    class_weights, sampler, augment, ...; see cnnlab.estimator.PARAMS) plus image_shape, out
    and verbose. Invalid values raise a ValueError in fit, with the CLI's message.
    """

    def __init__(self, **params: object) -> None:
        unknown = [k for k in params if k not in PARAMS]
        if unknown:
            raise TypeError(f"ImageClassifier got an unexpected keyword argument {unknown[0]!r}")
        for name, default in PARAMS.items():
            setattr(self, name, params.get(name, default))

    # ---- scikit-learn metadata -------------------------------------------------------------
    def __sklearn_tags__(self):  # noqa: ANN204
        """Tags: no NaN, no sparse input; n-d image arrays allowed."""
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        tags.non_deterministic = False
        return tags

    # ---- input conversion ------------------------------------------------------------------
    def _validate(self, X: object, y: object = None, fit: bool = False) -> tuple:
        """Checked numeric array (or paths) and labels; sets n_features_in_ for 2-D input."""
        if _is_paths(X):
            if fit:
                if y is None:
                    raise ValueError("ImageClassifier requires y to be passed, but the target y "
                                     "is None")
                y = np.asarray(y)
                if len(y) != len(X):
                    raise ValueError(f"{len(X)} image paths but {len(y)} labels")
                vars(self).pop("n_features_in_", None)
            return [Path(p) for p in X], y, "paths"
        ndim = getattr(X, "ndim", None)
        if ndim is None:
            try:
                ndim = np.ndim(X)
            except (ValueError, TypeError):
                ndim = 2
        if ndim >= 3:
            if fit:
                X, y = check_X_y(X, y, allow_nd=True, dtype="numeric",
                                 estimator=self)
                vars(self).pop("n_features_in_", None)  # pixels are not tabular features
            else:
                X = check_array(X, allow_nd=True, dtype="numeric", estimator=self)
            return X, y, "images"
        if fit:
            X, y = validate_data(self, X, y, dtype="numeric")
        else:
            X = validate_data(self, X, dtype="numeric", reset=False)
        return X, y, "table"

    def _rows_to_images(self, X: np.ndarray) -> np.ndarray:
        """[N,D] rows -> [N,...] image arrays (image_shape, else padded squares)."""
        n, d = X.shape
        if self.image_shape is not None:
            shape = tuple(int(s) for s in self.image_shape)
            if math.prod(shape) != d:
                raise ValueError(f"image_shape {shape} has {math.prod(shape)} values, the rows "
                                 f"have {d} features")
            return X.reshape(n, *shape)
        side = max(1, math.isqrt(d - 1) + 1 if d > 1 else 1)
        if side * side != d:
            X = np.concatenate([X, np.full((n, side * side - d), self.input_range_[0],
                                           dtype=X.dtype)], axis=1)
        return X.reshape(n, side, side)

    def _fit_range(self, X: np.ndarray) -> tuple[float, float]:
        if X.dtype == np.uint8:
            return 0.0, 255.0
        if X.dtype == bool:
            return 0.0, 1.0
        lo, hi = float(X.min()), float(X.max())
        if lo >= 0 and hi <= 1 and X.dtype.kind == "f":
            return 0.0, 1.0
        if lo >= 0 and hi <= 255:
            return 0.0, 255.0
        return lo, (hi if hi > lo else lo + 1.0)

    def _to_uint8(self, X: np.ndarray) -> np.ndarray:
        if X.dtype == np.uint8:
            return X
        out, clipped = scale_to_uint8(X, self.input_range_)
        if clipped:  # predict-time values beyond the range seen in fit
            warnings.warn(clip_message("X", clipped, X.size, self.input_range_), UserWarning,
                          stacklevel=5)
        return out

    def _nchw(self, X: np.ndarray, kind: str) -> np.ndarray:
        """uint8 [N,C,H,W] of image arrays or table rows, at their own size."""
        arr = self._to_uint8(X)
        if kind == "table":
            arr = self._rows_to_images(arr)
        return to_uint8_nchw(arr, "X")

    def _images(self, X: object, kind: str) -> torch.Tensor:
        """uint8 [N,C,H,W] at the model's input size."""
        c, s = self.image_shape_[0], self.image_shape_[1]
        if kind == "paths":
            from cnnlab.data.decode import decode_many

            arr, _ = decode_many(X, (s, s), c, self.resize)
            return torch.from_numpy(arr)
        return adjust(self._nchw(X, kind), (s, s), c)

    def _choose_shape(self, X: object, kind: str) -> tuple[int, int, int]:
        """(channels, size, size) the model will take, decided at fit time."""
        spec = get_spec(self.model)
        if kind == "paths":
            from cnnlab.data.decode import image_info

            channels = self.channels
            if channels is None:
                modes = {image_info(p)[2] for p in X[:: max(1, len(X) // 16)][:16]}
                channels = 1 if modes <= {"1", "L", "LA", "I", "I;16", "F"} else 3
            size = self.image_size or spec.fixed_size or spec.default_size or 64
            return channels, size, size
        arr = self._nchw(X, kind)
        channels = self.channels or arr.shape[1]
        size = self.image_size or spec.fixed_size or max(arr.shape[2], arr.shape[3],
                                                         spec.min_size)
        return int(channels), int(size), int(size)

    # ---- the estimator API -----------------------------------------------------------------
    def fit(self, X: object, y: object) -> ImageClassifier:
        """Train on images X (arrays, file paths or 2-D rows) with labels y."""
        given = self._settings()
        X, y, kind = self._validate(X, y, fit=True)
        check_classification_targets(y)
        y = np.asarray(y)
        if y.ndim != 1:
            raise ValueError(f"y should be a 1d array, got shape {y.shape}")
        classes, y_idx = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"ImageClassifier needs at least 2 classes to train; y has 1 class "
                             f"({classes.tolist()[0]!r})")  # 0.0, not np.float64(0.0)
        self.input_range_ = (0.0, 255.0) if kind == "paths" else self._fit_range(np.asarray(X))
        self.input_kind_ = kind
        self.n_pixels_ = None if kind == "paths" else int(np.prod(np.shape(X)[1:]))
        self.image_shape_ = self._choose_shape(X, kind)
        images = self._images(X, kind)
        names = [str(c) for c in classes]
        if len(set(names)) != len(names):  # e.g. 1 and "1": keep them apart by position
            names = [f"{i}:{c}" for i, c in enumerate(names)]
        labels = torch.from_numpy(y_idx.astype(np.int64).reshape(-1))
        data = ImageSet(images, labels, names, [str(i) for i in range(len(labels))])
        train, val = data, None
        if given["val_split"] > 0:
            keep, held = stratified_split(labels.numpy(), float(given["val_split"]),
                                          int(given["seed"]))
            if len(held):
                train, val = data.subset(keep), data.subset(held)
        splits = DataSplits(train=train, val=val, test=None, source="arrays")
        tmp = None if self.out else tempfile.mkdtemp(prefix="cnnlab-estimator-")
        given["image_size"], given["channels"] = self.image_shape_[1], self.image_shape_[0]
        given.update(out=str(Path(tmp) / "run") if tmp else str(self.out), report=False)
        try:
            result = run.train(given, splits=splits, verbose=bool(self.verbose),
                               force=True)
            self.model_ = result.load("best")
            self.model_.path = None
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        self.classes_ = classes
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.run_dir_ = result.run_dir if self.out else None
        return self

    def _settings(self) -> dict:
        """The parameters as checked training settings (before any data is touched)."""
        values = without_recipe_defaults({n: getattr(self, n) for n in PARAMS if n in SETTINGS})
        for n in [n for n, v in values.items() if v is None]:
            if isinstance(SETTINGS[n].default, (dict, list)):  # None here: the setting's default
                del values[n]
        resolve(values)  # one-line ValueError for any invalid value or combination
        return values

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities [N, n_classes], columns in the order of classes_."""
        check_is_fitted(self, "model_")
        X, _, kind = self._validate(X)
        if kind == "table" and self.n_pixels_ is not None and X.shape[1] != self.n_pixels_:
            raise ValueError(f"X has {X.shape[1]} features, but ImageClassifier is expecting "
                             f"{self.n_pixels_} features (pixels per image) as input")
        images = self._images(X, kind)
        # the current tta parameter (set_params after fit counts) and the fitted temperature
        logits = self.model_.view_logits(images, parse_tta(self.tta))
        return average_probs(logits.double(), self.model_.temperature).numpy()

    def predict(self, X: object) -> np.ndarray:
        """Predicted labels, as values of classes_."""
        proba = self.predict_proba(X)  # checks it is fitted before classes_ is read
        return self.classes_[proba.argmax(1)]


# scikit-learn reads an estimator's parameters from its __init__ signature (get_params, clone).
ImageClassifier.__init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
     *[inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d)
       for n, d in PARAMS.items()]])
