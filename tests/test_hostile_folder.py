"""Hostile image folders: symlinks back into the tree never duplicate images nor become a
class (issue 18, item 5); messages name the path the user gave (item 14)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from clitools import Zygote, assert_one_line_error
from conftest import write_image_folder

from cnnlab.data.load import LoadOptions, load_data, read_source
from cnnlab.errors import DataError


def folder(root: Path, partitions: bool = False) -> Path:
    return write_image_folder(root, n_per_class=6, size=8, classes=2, partitions=partitions)


def test_symlink_to_the_root_is_not_a_class(tmp_path: Path):
    root = folder(tmp_path / "d")
    os.symlink(".", root / "rootloop")
    data = read_source(root, LoadOptions(use_cache=False))
    assert data.classes == ["class0", "class1"]
    assert len(data) == 12 and len(set(data.ids)) == 12
    assert any("skipped 1 folder symlink(s)" in n and "rootloop" in n
               for n in data.meta["data_notes"])


def test_symlink_loop_inside_a_class_is_not_followed(tmp_path: Path):
    root = folder(tmp_path / "d")
    os.symlink("..", root / "class0" / "up")
    os.symlink("../class1", root / "class0" / "other")
    data = read_source(root, LoadOptions(use_cache=False))
    assert len(data) == 12  # nothing listed twice, no endless walk
    assert sorted(data.ids) == sorted(set(data.ids))


def test_symlinked_class_duplicating_another_is_skipped(tmp_path: Path):
    root = folder(tmp_path / "d")
    os.symlink("class0", root / "class2")
    data = read_source(root, LoadOptions(use_cache=False))
    assert data.classes == ["class0", "class1"]


def test_symlink_inside_a_partition_tree_does_not_leak_test_into_train(tmp_path: Path):
    root = folder(tmp_path / "d", partitions=True)
    os.symlink("../val/class0", root / "train" / "class9")
    os.symlink("..", root / "train" / "loop")
    splits = load_data(root, LoadOptions(use_cache=False))
    assert splits.classes == ["class0", "class1"]
    train_ids, val_ids = set(splits.train.ids), set(splits.val.ids)
    assert not {i.split("/", 2)[-1] for i in train_ids} & {i.split("/", 2)[-1] for i in val_ids}


def test_class_folder_symlinked_from_outside_the_tree_is_used(tmp_path: Path):
    root = folder(tmp_path / "d")
    outside = write_image_folder(tmp_path / "elsewhere", n_per_class=6, size=8, classes=1)
    os.symlink(outside / "class0", root / "class2")
    data = read_source(root, LoadOptions(use_cache=False))
    assert data.classes == ["class0", "class1", "class2"] and len(data) == 18


def test_broken_symlink_is_skipped(tmp_path: Path):
    root = folder(tmp_path / "d")
    os.symlink(tmp_path / "nowhere", root / "ghost")
    assert read_source(root, LoadOptions(use_cache=False)).classes == ["class0", "class1"]


def test_cli_trains_on_a_tree_with_a_root_loop(zygote: Zygote, tmp_path: Path):
    root = folder(tmp_path / "d")
    os.symlink(".", root / "rootloop")
    res = zygote.run("train", root, "--epochs", "1", "--model", "mlp", "--image-size", "8",
                     "--no-report", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "2 classes" in res.stderr and "rootloop" in res.stderr


def test_one_class_message_names_the_path_not_a_stem(zygote: Zygote, tmp_path: Path):
    sub = tmp_path / "deep" / "s.csv"
    sub.parent.mkdir()
    (tmp_path / "deep" / "images").mkdir()
    from PIL import Image
    for i in range(4):
        Image.new("L", (8, 8), i * 40).save(tmp_path / "deep" / "images" / f"{i}.png")
    sub.write_text("filename,numeric_label,partition\n0.png,0,train\n1.png,0,train\n"
                   "2.png,1,test\n3.png,1,test\n")
    with pytest.raises(DataError, match=rf"^{sub}: training data has 1 class"):
        load_data(sub, LoadOptions(use_cache=False))
    res = zygote.run("train", sub, "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(res, f"{sub}: training data has 1 class")
