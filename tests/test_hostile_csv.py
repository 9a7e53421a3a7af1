"""Hostile CSV indexes: no row is dropped or changed without a word (issue 18, items 2, 4, 6-8).

Every refusal names `file:line`, the bad value and what is allowed; every accepted index says
how many rows it used. The reader runs in-process (fast); one case per kind also runs as a
real `cnnlab` process to check the one line and exit code 2.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from clitools import Zygote, assert_one_line_error
from PIL import Image

from cnnlab.data.inspect import inspect_data
from cnnlab.data.load import LoadOptions, load_data, read_source
from cnnlab.errors import DataError

HEADER = ["filename", "semantic_label", "partition", "numeric_label"]


def csv_set(root: Path, rows: list[list], n_images: int = 12, header: list | None = None) -> Path:
    """images/0.png ... and index.csv holding `rows` exactly as given."""
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n_images):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(
            root / "images" / f"{i}.png")
    with open(root / "index.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header or HEADER)
        w.writerows(rows)
    return root / "index.csv"


def good_rows(n: int = 12) -> list[list]:
    return [[f"{i}.png", "ab"[i % 2], "train", i % 2] for i in range(n)]


def with_row(line: int, row: list, n: int = 12) -> list[list]:
    """good_rows with the row at CSV line `line` (the header is line 1) replaced."""
    rows = good_rows(n)
    rows[line - 2] = row
    return rows



@pytest.mark.parametrize("bad, needles", [
    ("trian", ("index.csv:5", "unknown partition 'trian'", "train", "val", "test")),
    ("tset", ("index.csv:5", "'tset'", "allowed")),
])
def test_unknown_partition_is_refused_with_its_line(tmp_path: Path, bad: str, needles):
    path = csv_set(tmp_path, with_row(5, ["3.png", "b", bad, 1]))
    with pytest.raises(DataError) as err:
        read_source(path, LoadOptions(use_cache=False))
    for n in needles:
        assert n in str(err.value)


def test_every_row_in_an_unknown_partition_names_the_first_line(tmp_path: Path):
    path = csv_set(tmp_path, [[f"{i}.png", "ab"[i % 2], "trian", i % 2] for i in range(6)])
    with pytest.raises(DataError, match=r"index.csv:2: unknown partition 'trian'"):
        read_source(path, LoadOptions(use_cache=False))


def test_skipped_partitions_are_counted_not_silent(tmp_path: Path):
    rows = good_rows() + [[f"{i}.png", "a", "challenge", 0] for i in range(3)]
    path = csv_set(tmp_path, rows)
    with pytest.raises(DataError, match="unknown partition 'challenge'"):
        read_source(path, LoadOptions(use_cache=False))
    data = read_source(path, LoadOptions(use_cache=False, skip_partitions=("challenge",)))
    assert len(data) == 12
    assert data.meta["rows_in_other_partitions"] == {"challenge": 3}
    assert "12 of 15 rows used" in data.meta["data_notes"][0]
    assert "challenge (3)" in data.meta["data_notes"][0]
    # inspect's size range reads the same rows (the skipped ones neither counted nor refused)
    summary, _ = inspect_data(path, LoadOptions(use_cache=False, skip_partitions=("challenge",)))
    assert summary["num_images"] == 12 and summary["image_size"]["sampled"] == 12


def test_semantic_label_with_empty_numeric_label_is_refused(tmp_path: Path):
    path = csv_set(tmp_path, with_row(7, ["5.png", "b", "train", ""]))
    with pytest.raises(DataError, match=r"index.csv:7: semantic_label 'b' but numeric_label is "
                                        "empty"):
        read_source(path, LoadOptions(use_cache=False))


def test_rows_without_any_label_are_counted_as_unlabeled(tmp_path: Path):
    path = csv_set(tmp_path, with_row(7, ["5.png", "", "train", ""]))
    data = read_source(path, LoadOptions(use_cache=False))
    assert int((data.labels < 0).sum()) == 1
    assert "1 without a label" in data.meta["data_notes"][0]


def test_two_numeric_labels_with_one_name_are_refused(tmp_path: Path):
    path = csv_set(tmp_path, with_row(6, ["4.png", "a", "train", 1]))
    # line 2 says 0 -> a; line 6 says 1 -> a (and line 3 said 1 -> b: caught as well)
    with pytest.raises(DataError, match=r"index.csv:6: .*(two numeric labels|named both)"):
        read_source(path, LoadOptions(use_cache=False))
    only_a = [[f"{i}.png", "cat", "train", i % 2] for i in range(6)]
    path2 = csv_set(tmp_path / "b", only_a)
    with pytest.raises(DataError, match=r"index.csv:3: class 'cat' has two numeric labels, 0 "
                                        r"\(line 2\) and 1"):
        read_source(path2, LoadOptions(use_cache=False))


@pytest.mark.parametrize("value, words", [
    ("1.7", "not a whole number"), ("0.5", "not a whole number"), ("inf", "not a finite"),
    ("-inf", "not a finite"), ("nan", "not a finite"), ("1e400", "not a finite"),
    ("-1", "negative label -1"), ("cat", "is not a number"),
])
def test_numeric_label_values_are_never_changed(tmp_path: Path, value: str, words: str):
    path = csv_set(tmp_path, with_row(4, ["2.png", "", "train", value]))
    with pytest.raises(DataError) as err:
        read_source(path, LoadOptions(use_cache=False))
    msg = str(err.value)
    assert "index.csv:4" in msg and words in msg and "\n" not in msg, msg


def test_whole_float_labels_are_accepted(tmp_path: Path):
    rows = [[f"{i}.png", "", "train", f"{i % 2}.0"] for i in range(12)]
    data = read_source(csv_set(tmp_path, rows), LoadOptions(use_cache=False))
    assert data.labels.tolist() == [i % 2 for i in range(12)]


def test_huge_numeric_label_is_refused_before_any_allocation(tmp_path: Path):
    path = csv_set(tmp_path, with_row(9, ["7.png", "", "train", 1_000_000_000]))
    with pytest.raises(DataError, match=r"index.csv:9: label 1000000000 is too large for 12 "
                                        "images"):
        read_source(path, LoadOptions(use_cache=False))


def test_sparse_labels_warn_about_empty_classes(tmp_path: Path):
    rows = [[f"{i}.png", "", "train", [0, 1, 5][i % 3]] for i in range(12)]
    data = read_source(csv_set(tmp_path, rows), LoadOptions(use_cache=False))
    assert data.classes == ["0", "1", "2", "3", "4", "5"]
    note = [n for n in data.meta["data_notes"] if n.startswith("warning")][0]
    assert "3 of 6 classes have no images (2, 3, 4)" in note


def test_line_numbers_survive_the_task_filter(tmp_path: Path):
    header = [*HEADER, "task"]
    rows = [[f"{i}.png", "ab"[i % 2], "train", i % 2, "t" if i < 8 else "u"] for i in range(12)]
    rows[9] = ["9.png", "b", "tset", 1, "u"]  # line 11, in task u
    path = csv_set(tmp_path, rows, header=header)
    assert len(read_source(path, LoadOptions(use_cache=False, task="t"))) == 8
    with pytest.raises(DataError, match=r"index.csv:11: unknown partition 'tset'"):
        read_source(path, LoadOptions(use_cache=False, task="u"))


def test_numbers_named_by_themselves_cannot_collide_with_names(tmp_path: Path):
    rows = [["0.png", "1", "train", 0], ["1.png", "", "train", 1], ["2.png", "1", "train", 0]]
    with pytest.raises(DataError, match="class name '1' is used for two numeric labels"):
        read_source(csv_set(tmp_path, rows), LoadOptions(use_cache=False))


def test_cells_cnnlab_neutralised_are_read_back(tmp_path: Path):
    (tmp_path / "images").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "images" / "=x.png")
    Image.new("L", (8, 8), 255).save(tmp_path / "images" / "y.png")
    (tmp_path / "index.csv").write_text("filename,semantic_label\n'=x.png,'=SUM(A1)\n"
                                        "y.png,'-b\n")
    data = read_source(tmp_path / "index.csv", LoadOptions(use_cache=False))
    assert data.ids == ["=x.png", "y.png"] and data.classes == ["-b", "=SUM(A1)"]


def test_rows_used_are_printed_and_recorded(zygote: Zygote, tmp_path: Path):
    rows = good_rows() + [["0.png", "a", "train", 0]]  # one duplicate row
    path = csv_set(tmp_path, rows)
    res = zygote.run("train", path, "--epochs", "1", "--model", "mlp", "--image-size", "8",
                     "--no-report", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "index.csv: 12 of 13 rows used; 1 duplicate row(s) dropped" in res.stderr
    notes = json.loads((tmp_path / "run" / "metrics.json").read_text())["notes"]
    assert any("12 of 13 rows used" in n for n in notes)


@pytest.mark.parametrize("row, needles", [
    (["3.png", "b", "trian", 1], ("index.csv:5", "unknown partition 'trian'")),
    (["3.png", "b", "train", "inf"], ("index.csv:5", "'inf' is not a finite number")),
    (["3.png", "b", "train", "1.7"], ("index.csv:5", "'1.7' is not a whole number")),
    (["3.png", "b", "train", ""], ("index.csv:5", "numeric_label is empty")),
    (["3.png", "", "train", 10**9], ("index.csv:5", "too large")),
])
def test_cli_refuses_in_one_line(zygote: Zygote, tmp_path: Path, row, needles):
    path = csv_set(tmp_path, with_row(5, row))
    res = zygote.run("train", path, "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(res, *needles)
    assert not (tmp_path / "run").exists()


def test_all_good_rows_still_train(tmp_path: Path):
    splits = load_data(csv_set(tmp_path, good_rows()), LoadOptions(test_split=0,
                                                                   val_split=0.25))
    assert len(splits.train) + len(splits.val) == 12
