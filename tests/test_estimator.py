"""cnnlab.ImageClassifier: the scikit-learn API over cnnlab's own training code."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import digits_arrays, write_image_folder
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from cnnlab import ImageClassifier

# Small, single-threaded settings: the estimator checks fit ~50 tiny models.
FAST = {"model": "mlp", "model_args": {"hidden": 32}, "epochs": 5, "batch_size": 32,
        "lr": 3e-2, "num_threads": 1, "device": "cpu"}

# Checks that cannot run here, with the reason (none fail on their own merits).
EXPECTED_FAILED: dict[str, str] = {}


@parametrize_with_checks([ImageClassifier(**FAST)],
                         expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
def test_cross_val_score_on_digit_images():
    x, y = digits_arrays()
    x, y = x[::2], y[::2]  # 899 images [N,8,8]
    est = ImageClassifier(model="cnn", model_args={"width": 8}, epochs=4, lr=1e-2,
                          num_threads=1, device="cpu")
    scores = cross_val_score(est, x, y, cv=3)
    assert scores.shape == (3,)
    assert scores.min() > 0.6  # chance is 0.1
    assert not hasattr(est, "model_")  # cross_val_score fits clones, never the original


def test_labels_pickle_and_run_folder(tmp_path: Path):
    x, y = digits_arrays(600)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                      "nine"])[y]
    est = ImageClassifier(**{**FAST, "epochs": 8}, out=str(tmp_path / "run"))
    est.fit(x[:500].reshape(500, -1), names[:500])  # flattened rows come back as 8x8 images
    assert list(est.classes_) == sorted(set(names[:500]))
    assert est.n_features_in_ == 64 and est.image_shape_ == (1, 8, 8)
    pred = est.predict(x[500:].reshape(100, -1))
    assert pred.dtype.kind == "U" and set(pred) <= set(names)
    assert est.score(x[500:].reshape(100, -1), names[500:]) > 0.7
    proba = est.predict_proba(x[500:].reshape(100, -1))
    assert proba.shape == (100, 10) and np.allclose(proba.sum(1), 1)
    # the same images as [N,H,W] give the same answers as the flattened rows
    assert (est.predict(x[500:]) == pred).all()
    # out=: the ordinary run folder of `cnnlab train`, here with its metrics
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]["n"] == 500
    again = pickle.loads(pickle.dumps(est))
    assert np.array_equal(again.predict_proba(x[500:]), proba)
    # fit with other parameters through set_params (as GridSearchCV does)
    est2 = clone(est).set_params(epochs=1, out=None)
    assert est2.get_params()["epochs"] == 1 and not hasattr(est2, "model_")
    with pytest.raises(ValueError, match="expecting 64 features"):
        est.predict(x[500:].reshape(100, -1)[:, :60])


@pytest.mark.slow
def test_file_paths_grid_search_and_pipeline(tmp_path: Path):
    root = write_image_folder(tmp_path / "imgs", n_per_class=8, size=16, classes=2)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    labels = [Path(p).parent.name for p in paths]
    est = ImageClassifier(**{**FAST, "epochs": 6}, image_size=16)
    est.fit(paths, labels)
    assert list(est.classes_) == ["class0", "class1"] and est.image_shape_ == (3, 16, 16)
    assert not hasattr(est, "n_features_in_")
    assert est.score(paths, labels) >= 0.9
    # Pipeline + GridSearchCV over images scaled by a preceding step
    x, y = digits_arrays(300)
    pipe = make_pipeline(FunctionTransformer(lambda a: a / 255.0), ImageClassifier(**FAST))
    search = GridSearchCV(pipe, {"imageclassifier__lr": [1e-3, 3e-2]}, cv=2)
    search.fit(x, y)
    assert search.best_params_["imageclassifier__lr"] in (1e-3, 3e-2)
    assert len(search.cv_results_["mean_test_score"]) == 2
    assert search.score(x, y) > 0.5


def test_one_class_is_named_as_the_user_wrote_it():
    """numpy's scalar repr (np.float64(0.0), np.str_('a')) stays out of the message."""
    X = np.random.default_rng(0).random((6, 8, 8))
    for y, shown in ((np.zeros(6), "0.0"), (np.array(["a"] * 6), "'a'"),
                     (np.array(["a"] * 6, dtype=object), "'a'")):  # a pandas column's dtype
        with pytest.raises(ValueError, match=rf"needs at least 2 classes to train; y has 1 class "
                           rf"\({shown}\)$"):
            ImageClassifier(model="mlp", epochs=1).fit(X, y)
