"""Messages name the right thing; builder failures are one line; no CSV cell runs as a
spreadsheet formula (issue 18, items 4, 14, 15)."""

from __future__ import annotations

import csv
import errno
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from clitools import Zygote, assert_one_line_error
from conftest import write_image_folder
from PIL import Image

from cnnlab.checkpoint import atomic_write_bytes, save_checkpoint
from cnnlab.data.load import LoadOptions, read_source
from cnnlab.errors import CheckpointError
from cnnlab.io import read_csv, write_csv

DANGEROUS = ["=1+2", "+cmd", "-2+3", "@SUM(A1)"]



@pytest.fixture(scope="module")
def trained(zygote: Zygote, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny 2-class model whose class names are formulas, trained by the CLI."""
    root = tmp_path_factory.mktemp("formula")
    data = root / "d"
    rng = np.random.default_rng(0)
    for k, name in enumerate(DANGEROUS[:2]):
        (data / name).mkdir(parents=True)
        for i in range(8):
            img = rng.integers(0, 60, (8, 8), dtype=np.uint8)
            img[k * 4:k * 4 + 4] = 230
            Image.fromarray(img).save(data / name / f"{i}.png")
    res = zygote.run("train", data, "--model", "mlp", "--model-arg", "hidden=16", "--epochs",
                     "1", "--image-size", "8", "--no-report", "--out", root / "run")
    assert res.returncode == 0, res.stderr
    return {"root": root, "data": data, "run": root / "run", "weights": root / "run" / "best.pt"}


def cells(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return [c for row in csv.reader(fh) for c in row]


def test_safe_cell_neutralises_formulas_but_keeps_numbers():
    from cnnlab.csvsafe import safe_cell

    for bad in ["=1+2", "+cmd", "-x", "@SUM(A1)", "\tfoo", "\rbar", "-", "=", "-1+2",
                "+1-", "-nan(x)"]:
        assert safe_cell(bad) == "'" + bad
    for ok in ["-0.5", "-1e-3", "+3", "-12", "-inf", "-.5", "0.25", "abc", "", "a=b", 3, -0.5,
               None]:
        assert safe_cell(ok) == ok


def test_predictions_csv_from_training_has_no_live_formula(trained: dict):
    found = cells(trained["run"] / "predictions.csv")
    assert "'=1+2" in found and "'+cmd" in found
    assert not any(c.startswith(("=", "+", "-", "@", "\t", "\r")) and not c[1:2].isdigit()
                   for c in found)


def test_predict_output_has_no_live_formula(zygote: Zygote, trained: dict, tmp_path: Path):
    out = tmp_path / "p.csv"
    res = zygote.run("predict", "--weights", trained["weights"], trained["data"], "--output",
                     out)
    assert res.returncode == 0, res.stderr
    found = cells(out)
    assert "'=1+2" in found and "=1+2" not in found and "+cmd" not in found


def test_write_csv_round_trips_neutralised_cells(tmp_path: Path):
    rows = [{"name": n, "value": -0.5, "=key": 1} for n in DANGEROUS]
    write_csv(tmp_path / "t.csv", rows)
    text = (tmp_path / "t.csv").read_text()
    assert "'=key" in text and "-0.5" in text and "'-0.5" not in text
    back = read_csv(tmp_path / "t.csv")
    assert [r["name"] for r in back] == DANGEROUS and back[0]["=key"] == 1
    assert back[0]["value"] == -0.5


def test_augmented_index_is_neutralised_and_reads_back(tmp_path: Path):
    from cnnlab.data.offline_augment import write_augmented

    src = tmp_path / "d"
    for k, name in enumerate(["=1+2", "-x"]):
        (src / name).mkdir(parents=True)
        for i in range(4):
            Image.new("L", (8, 8), 40 * k + i).save(src / name / f"{i}.png")
    res = write_augmented(src, tmp_path / "aug", "hflip", copies=1)
    text = res.index.read_text()
    assert "'=1+2" in text and "\n=1+2" not in text and ",=1+2" not in text
    data = read_source(res.index, LoadOptions(use_cache=False))
    assert data.classes == ["-x", "=1+2"]


def test_random_bytes_checkpoint_is_not_a_checkpoint(zygote: Zygote, trained: dict,
                                                     tmp_path: Path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    res = zygote.run("predict", "--weights", junk, trained["data"], "--output", tmp_path / "p")
    line = assert_one_line_error(res, "junk.pt", "not a checkpoint")
    assert "run code" not in line and "refused" not in line


def test_first_checkpoint_failure_does_not_claim_a_previous_one(zygote: Zygote, tmp_path: Path):
    data = write_image_folder(tmp_path / "d", n_per_class=6, size=8, classes=2)
    res = zygote.run("train", data, "--model", "mlp", "--model-arg", "hidden=512",
                     "--image-size", "8", "--epochs", "1", "--out", tmp_path / "run",
                     fsize=60_000)  # config.yaml fits; the ~140 KB checkpoint does not
    line = assert_one_line_error(res, "best.pt", "could not save checkpoint", after_progress=True)
    assert "intact" not in line and "no checkpoint was written" in line


def test_save_checkpoint_over_an_existing_one_says_it_is_intact(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"arch": {}, "model_state": {}})
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(CheckpointError, match="previous checkpoint is intact"):
        save_checkpoint(path, {"arch": {}, "model_state": {}})


def test_read_only_error_names_the_target_not_the_temp_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    def read_only(prefix: str = "", suffix: str = "", dir: str | None = None):  # noqa: A002
        raise OSError(errno.EROFS, "Read-only file system", f"{dir}/{prefix}x1y2{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    target = tmp_path / "predictions.csv"
    with pytest.raises(OSError) as err:
        atomic_write_bytes(target, b"x")
    assert err.value.filename == str(target) and err.value.errno == errno.EROFS


@pytest.fixture
def mount_tmpfs(tmp_path: Path):
    """mount_tmpfs(options) -> a real tmpfs folder (skipped where mounting is not allowed)."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        mnt = tmp_path / f"m{len(mounted)}"
        mnt.mkdir()
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()[:80]}); needs root")
        mounted.append(mnt)
        return mnt
    yield mount
    for m in mounted:
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_cli_read_only_target_is_named(zygote: Zygote, trained: dict, mount_tmpfs):
    ro = mount_tmpfs("size=1m,ro")
    res = zygote.run("predict", "--weights", trained["weights"], trained["data"], "--output",
                     ro / "predictions.csv")
    line = assert_one_line_error(res, f"{ro / 'predictions.csv'}:", "read-only")
    assert ".tmp" not in line


def test_cli_disk_full_writing_predictions_names_the_file(zygote: Zygote, trained: dict,
                                                          mount_tmpfs):
    full = mount_tmpfs("size=64k")
    fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # as much as the disk takes
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    many = write_image_folder(trained["root"] / "many", n_per_class=100, size=8, classes=2)
    for d in many.iterdir():
        d.rename(many / ("=1+2" if d.name == "class0" else "+cmd"))
    res = zygote.run("predict", "--weights", trained["weights"], many, "--output",
                     full / "predictions.csv")
    line = assert_one_line_error(res, f"{full / 'predictions.csv'}:", "no space left")
    assert ".tmp" not in line
    assert not (full / "predictions.csv").exists()


def test_class_mismatch_names_the_data_path(zygote: Zygote, trained: dict, tmp_path: Path):
    other = write_image_folder(tmp_path / "three", n_per_class=3, size=8, classes=3)
    res = zygote.run("evaluate", "--weights", trained["weights"], other)
    assert_one_line_error(res, f"{other}:", "classes", "differ")


@pytest.mark.parametrize("arg, words", [
    ("width=-4", ("model 'cnn' cannot be built", "negative dimension", "--model-arg")),
    ("width=0", ("model 'cnn'", "size 0", "--model-arg")),
    ("width=abc", ("model 'cnn'", "bad arguments")),
])
def test_model_arguments_that_break_the_builder_are_one_line(zygote: Zygote, tmp_path: Path,
                                                             arg: str, words):
    res = zygote.run("train", "--epochs", "1", "--model-arg", arg, "--out", tmp_path / "run")
    assert_one_line_error(res, *words, after_progress=True)
