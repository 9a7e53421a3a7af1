"""--class-weights by class name: rare=10 is the weight list [1, 10] of classes (common, rare)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_imbalance import _train, imbalanced  # noqa: F401  (the 10:1 data set fixture)

from cnnlab.data.imageset import DataSplits
from cnnlab.errors import CnnlabError
from cnnlab.settings import TrainConfig, parse_class_weights
from cnnlab.train.setup import class_weight_tensor


def test_parse_by_name():
    classes = ["cats", "dogs", "foxes"]
    assert parse_class_weights("dogs=20", classes) == [1.0, 20.0, 1.0]
    assert parse_class_weights("foxes=0.5, cats=2", classes) == [2.0, 1.0, 0.5]
    assert parse_class_weights("dogs=20") == "dogs=20"  # the CLI hands names on to the run
    assert parse_class_weights("1, 20") == [1.0, 20.0] == parse_class_weights("1,20", classes)
    with pytest.raises(CnnlabError, match="no class 'wolves'.*cats, dogs, foxes"):
        parse_class_weights("wolves=3", classes)
    with pytest.raises(CnnlabError, match="must be a number"):
        parse_class_weights("dogs=lots", classes)
    with pytest.raises(CnnlabError, match="must be a number"):  # the form, before any data
        parse_class_weights("dogs=lots")


def test_weight_tensor_by_name(imbalanced: DataSplits):  # noqa: F811
    t = class_weight_tensor(TrainConfig(class_weights="rare=20"), imbalanced.train)
    assert t.tolist() == [1.0, 20.0]
    with pytest.raises(CnnlabError, match="must not be negative"):
        class_weight_tensor(TrainConfig(class_weights="rare=-1"), imbalanced.train)


@pytest.mark.slow
def test_named_weight_trains_as_the_list(imbalanced: DataSplits, tmp_path: Path):  # noqa: F811
    named = _train(imbalanced, tmp_path, "named", class_weights="rare=10")
    listed = _train(imbalanced, tmp_path, "listed", class_weights=[1.0, 10.0])
    plain = _train(imbalanced, tmp_path, "plain")
    assert named["per_class"]["rare"]["recall"] == listed["per_class"]["rare"]["recall"]
    assert named["per_class"]["rare"]["recall"] > plain["per_class"]["rare"]["recall"] + 0.25
