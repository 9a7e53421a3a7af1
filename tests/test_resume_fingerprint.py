"""--resume on changed data is refused (issue 21 item 3): the checkpoint holds a fingerprint of
the classes and of each split's ids and labels; a resume never silently makes other splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from clitools import Zygote, assert_one_line_error
from conftest import write_image_folder

from cnnlab.data.imageset import DataSplits, ImageSet
from cnnlab.train.fingerprint import data_fingerprint, describe_change

TINY = ["--model-arg", "width=4", "--image-size", "8", "--no-report", "--num-threads", "1"]



def _splits(train: list[tuple[str, int]], test: list[tuple[str, int]]) -> DataSplits:
    def make(items: list[tuple[str, int]]) -> ImageSet:
        return ImageSet(torch.zeros(len(items), 1, 2, 2, dtype=torch.uint8),
                        torch.tensor([y for _, y in items]), ["a", "b"],
                        [i for i, _ in items])
    return DataSplits(make(train), None, make(test))


def test_describe_change_names_what_changed():
    base = data_fingerprint(_splits([("a/1", 0), ("b/2", 1), ("a/3", 0)], [("b/4", 1)]))
    same = data_fingerprint(_splits([("a/3", 0), ("b/2", 1), ("a/1", 0)], [("b/4", 1)]))
    assert describe_change(base, same) is None  # the order of the items does not matter
    added = data_fingerprint(_splits([("a/1", 0), ("b/2", 1), ("a/3", 0), ("a/5", 0)],
                                     [("b/4", 1)]))
    assert describe_change(base, added) == "1 image(s) added; the split differs (train 3 -> 4)"
    relabelled = data_fingerprint(_splits([("a/1", 1), ("b/2", 1), ("a/3", 0)], [("b/4", 1)]))
    assert describe_change(base, relabelled) == "labels changed; the split differs"
    moved = data_fingerprint(_splits([("a/1", 0), ("b/2", 1), ("b/4", 1)], [("a/3", 0)]))
    assert describe_change(base, moved) == "the split differs"


@pytest.mark.slow
def test_resume_on_changed_data_is_refused(zygote: Zygote, tmp_path: Path):
    data = write_image_folder(tmp_path / "imgs", n_per_class=8, size=8, classes=3)
    run = tmp_path / "run"
    first = zygote.run("train", data, *TINY, "--epochs", "1", "--out", run)
    assert first.returncode == 0, first.stderr
    ok = zygote.run("train", "--out", run, "--resume", "--epochs", "2")  # unchanged: resumes
    assert ok.returncode == 0, ok.stderr
    assert len((run / "metrics.csv").read_text().splitlines()) == 3  # header + 2 epochs
    kept = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}

    def refused(*needles: str) -> None:
        res = zygote.run("train", "--out", run, "--resume", "--epochs", "3")
        assert_one_line_error(res, "--resume: the data changed since the run started",
                              "start a new run", *needles)
        assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == kept

    extra = [data / "class2" / f"extra{i}.png" for i in range(3)]
    for p in extra:
        shutil.copyfile(sorted((data / "class2").iterdir())[0], p)
    refused("3 image(s) added", "the split differs")
    for p in extra:
        p.unlink()
    gone = sorted((data / "class0").iterdir())[0]
    saved = gone.read_bytes()
    gone.unlink()
    refused("1 image(s) removed")
    gone.write_bytes(saved)
    moved = sorted((data / "class1").iterdir())[0]
    moved.rename(data / "class0" / moved.name)  # relabelled: moved to another class folder
    refused("images renamed, replaced or moved to another class")
    (data / "class0" / moved.name).rename(moved)
    again = zygote.run("train", "--out", run, "--resume", "--epochs", "3")  # restored: resumes
    assert again.returncode == 0, again.stderr


@pytest.mark.slow
def test_a_checkpoint_without_fingerprint_resumes_with_a_note(zygote: Zygote, tmp_path: Path):
    data = write_image_folder(tmp_path / "imgs", n_per_class=8, size=8, classes=3)
    run = tmp_path / "run"
    first = zygote.run("train", data, *TINY, "--epochs", "1", "--out", run)
    assert first.returncode == 0, first.stderr
    ckpt = torch.load(run / "last.pt", weights_only=True)
    del ckpt["data"]["fingerprint"]  # what an older cnnlab wrote
    torch.save(ckpt, run / "last.pt")
    res = zygote.run("train", "--out", run, "--resume", "--epochs", "2")
    assert res.returncode == 0, res.stderr
    assert "holds no data fingerprint" in " ".join((res.stdout + res.stderr).split())
