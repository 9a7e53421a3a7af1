"""Partition folders (Kaggle's training_set/test_set) are read as splits, never as classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.load import LoadOptions, load_data
from cnnlab.data.sources.folder import split_name
from cnnlab.errors import DataError


def _kaggle(root: Path, tops: tuple[str, ...] = ("training_set", "test_set"),
            n: tuple[int, ...] = (10, 4)) -> Path:
    """root/<top>/{cats,dogs}/*.png; cats dark, dogs bright (a learnable difference)."""
    rng = np.random.default_rng(0)
    for top, count in zip(tops, n, strict=True):
        for cls, base in (("cats", 20), ("dogs", 200)):
            d = root / top / cls
            d.mkdir(parents=True)
            for i in range(count):
                img = (base + rng.integers(0, 30, (12, 12, 3))).clip(0, 255).astype(np.uint8)
                Image.fromarray(img).save(d / f"{cls}.{i}.png")
    return root


@pytest.mark.parametrize("name,split", [("training_set", "train"), ("Training Set", "train"),
                                        ("train", "train"), ("valid", "val"), ("dev", "val"),
                                        ("validation_set", "val"), ("test_set", "test"),
                                        ("Testing", "test"), ("cats", None)])
def test_partition_names(name: str, split: str | None):
    assert split_name(name) == split


def test_kaggle_split_folders_are_train_and_test_with_the_right_classes(tmp_path: Path):
    splits = load_data(_kaggle(tmp_path / "cats_vs_dogs"), LoadOptions(image_size=12))
    assert splits.classes == ["cats", "dogs"]  # not ["test_set", "training_set"]
    assert len(splits.test) == 8 and all(i.startswith("test_set/") for i in splits.test.ids)
    assert all(i.startswith("training_set/") for i in splits.train.ids + splits.val.ids)
    assert len(splits.train) + len(splits.val) == 20
    assert "training_set/ -> train" in splits.split_note
    assert "test_set/ -> test" in splits.split_note
    # the labels follow the class folders inside each split
    for s in (splits.train, splits.test):
        for i, lab in zip(s.ids, s.labels.tolist(), strict=True):
            assert i.split("/")[1] == splits.classes[lab]


@pytest.mark.slow
def test_kaggle_folder_trains_as_train_test(tmp_path: Path):
    from cnnlab.api import train

    res = train(_kaggle(tmp_path / "kaggle"), model="cnn", epochs=6, image_size=12, batch_size=4,
                out=str(tmp_path / "run"), verbose=False, report=False)
    assert set(res.metrics) >= {"test"}
    assert res.metrics["test"]["n"] == 8
    assert res.load().classes == ["cats", "dogs"]
    assert res.metrics["test"]["accuracy"] >= 0.75


def test_unnamed_two_level_layout_is_refused_with_the_way_out(tmp_path: Path):
    root = _kaggle(tmp_path / "d", ("set_a", "set_b"), (6, 3))
    with pytest.raises(DataError) as err:
        load_data(root, LoadOptions(image_size=12))
    msg = str(err.value)
    assert "--layout splits" in msg and "--layout classes" in msg and "\n" not in msg
    s = load_data(root, LoadOptions(image_size=12, layout="splits"))
    assert s.classes == ["cats", "dogs"] and len(s.test) == 6  # the larger folder trains
    assert "set_a/ -> train" in s.split_note and "set_b/ -> test" in s.split_note
    c = load_data(root, LoadOptions(image_size=12, layout="classes"))
    assert c.classes == ["set_a", "set_b"]


def test_class_folders_beside_an_unlabeled_test_folder(tmp_path: Path):
    root = tmp_path / "d"
    _kaggle(root / "tmp", ("train",), (6,))
    for cls in ("cats", "dogs"):
        (root / "tmp" / "train" / cls).rename(root / cls)
    (root / "test").mkdir()
    Image.new("RGB", (12, 12)).save(root / "test" / "x.png")
    s = load_data(root, LoadOptions(image_size=12, test_split=0.0))
    assert s.classes == ["cats", "dogs"]
    assert len(s.test) == 1 and int(s.test.labels[0]) == -1
    assert "cats/, dogs/ as classes" in s.split_note
