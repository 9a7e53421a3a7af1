"""Bad input never crashes: a corpus of broken and odd files, generated here.

Each case gets either a correct result (odd but convertible images are converted; EXIF
orientation is applied) or one clear line naming the file and the problem, exit code 2, no
traceback. CLI cases run as real processes forked from a pre-imported interpreter
(clitools.Zygote); two also run as fresh `python -m cnnlab` processes.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import assert_one_line_error, run_cli
from conftest import write_image_folder
from PIL import Image

import cnnlab
from cnnlab.data.decode import decode_image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: Path, side: int = 100_000) -> Path:
    """A tiny PNG whose header claims side x side pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
                     png_chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + png_chunk(b"IEND", b""))
    return path


def noise(size: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def folder_with(root: Path, name: str, writer) -> Path:  # noqa: ANN001
    """A valid 2-class folder plus one extra file `class0/name` written by `writer(path)`."""
    write_image_folder(root, n_per_class=4, size=16, classes=2)
    writer(root / "class0" / name)
    return root


def truncated(path: Path, fmt: str) -> None:
    noise().save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def csv_set(root: Path, rows: list[dict] | None = None) -> Path:
    """images/ with 8 PNGs and an EECS-445-style index.csv (optionally replaced rows)."""
    (root / "images").mkdir(parents=True)
    base = []
    for i in range(8):
        noise(16, i).save(root / "images" / f"{i}.png")
        base.append({"filename": f"{i}.png", "semantic_label": "ab"[i % 2],
                     "partition": "train", "numeric_label": i % 2, "task": "t"})
    return write_csv(root / "index.csv", rows(base) if callable(rows) else base)


def npy_set(root: Path, x: np.ndarray, y: np.ndarray) -> Path:
    root.mkdir(parents=True)
    np.save(root / "d_images.npy", x)
    np.save(root / "d_labels.npy", y)
    return root



@pytest.fixture(scope="module")
def model(zygote, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny trained 2-class RGB model and variants of its checkpoint."""
    root = tmp_path_factory.mktemp("model")
    data = write_image_folder(root / "imgs", n_per_class=8, size=16, classes=2)
    res = zygote.run("train", data, "--model-arg", "width=4", "--image-size", "16", "--epochs",
                     "1", "--no-report", "--out", root / "run")
    assert res.returncode == 0, res.stderr
    good = root / "run" / "best.pt"
    ckpt = torch.load(good, weights_only=True)
    other = dict(ckpt, arch={**ckpt["arch"], "name": "mlp", "args": {}})  # cnn weights
    torch.save(other, root / "other_arch.pt")
    torch.save(dict(ckpt, format_version=99), root / "newer.pt")
    (root / "truncated.pt").write_bytes(good.read_bytes()[:5000])
    return {"root": root, "data": data, "good": good, "run": root / "run"}


def bad_cases(t: Path, model: dict) -> dict[str, tuple[list, tuple[str, ...]]]:
    """{case: (cnnlab argv, words the one error line must contain)} on files made here."""
    def train(path: Path, *extra: str) -> list:
        return ["train", path, "--epochs", "1", "--out", t / "runs" / path.name, *extra]

    cases: dict[str, tuple[list, tuple[str, ...]]] = {}
    cases["missing path"] = (train(t / "nope"), ("nope", "no such file"))
    cases["zero-byte file"] = (train(folder_with(t / "zero", "empty.jpg",
                                                 lambda p: p.write_bytes(b""))),
                               ("empty.jpg", "empty file", "--skip-bad"))
    cases["text named .jpg"] = (train(folder_with(t / "text", "notes.jpg",
                                                  lambda p: p.write_text("hello\n" * 50))),
                                ("notes.jpg", "not a readable image"))
    cases["truncated JPEG"] = (train(folder_with(t / "tjpg", "cut.jpg",
                                                 lambda p: truncated(p, "JPEG"))),
                               ("cut.jpg", "truncated"))
    cases["truncated PNG"] = (train(folder_with(t / "tpng", "cut.png",
                                                lambda p: truncated(p, "PNG"))),
                              ("cut.png", "cannot decode"))
    cases["decompression bomb"] = (train(folder_with(t / "bomb", "bomb.png", bomb_png)),
                                   ("bomb.png", "too large"))
    empty = write_image_folder(t / "emptyclass", n_per_class=4, size=16, classes=2)
    (empty / "class9").mkdir()
    cases["empty class folder"] = (train(empty), ("class9", "empty class folder"))
    cases["one class only"] = (train(write_image_folder(t / "one", 4, 16, classes=1)),
                               ("one", "at least 2"))

    cases["csv missing column"] = (train(csv_set(t / "c1", lambda rows: [
        {k: v for k, v in r.items() if k != "filename"} for r in rows])),
        ("index.csv", "missing column 'filename'"))
    cases["csv unknown label"] = (train(csv_set(t / "c2", lambda rows: [
        {**r, "numeric_label": "cat" if i == 3 else r["numeric_label"]}
        for i, r in enumerate(rows)])), ("index.csv:5", "'cat' is not a number"))
    cases["csv ../../etc/passwd"] = (train(csv_set(t / "c3", lambda rows: rows + [
        {**rows[0], "filename": "../../etc/passwd"}])), ("index.csv:10", "escapes the data root"))
    cases["csv absolute path"] = (train(csv_set(t / "c4", lambda rows: rows + [
        {**rows[0], "filename": "/etc/passwd"}])), ("index.csv:10", "absolute path"))
    cases["csv duplicate rows, other label"] = (train(csv_set(t / "c5", lambda rows: rows + [
        {**rows[0], "numeric_label": 1, "semantic_label": "b"}])),
        ("index.csv:10", "listed twice with different labels"))
    cases["csv row naming a missing file"] = (train(csv_set(t / "c6", lambda rows: rows + [
        {**rows[0], "filename": "gone.png"}])), ("index.csv:10", "gone.png", "not found"))

    digits = np.random.default_rng(0).integers(0, 255, (40, 8, 8), dtype=np.uint8)
    labels = np.arange(40) % 2
    cases["npy mismatched lengths"] = (train(npy_set(t / "n1", digits, labels[:30])),
                                       ("d_labels.npy", "30 labels for 40 images"))
    nan = digits.astype(np.float32)
    nan[3, 2, 2] = np.nan
    cases["npy NaN values"] = (train(npy_set(t / "n2", nan, labels)), ("n2", "NaN"))
    cases["npy string dtype"] = (train(npy_set(t / "n3", digits.astype(str), labels)),
                                 ("n3", "numeric array", "<U"))
    cases["npy complex dtype"] = (train(npy_set(t / "n4", digits.astype(np.complex64),
                                                labels)), ("n4", "complex64"))
    cases["npy 5 dimensions"] = (train(npy_set(t / "n5", digits.reshape(40, 1, 2, 4, 8),
                                               labels)), ("n5", "3 or 4 dimensions"))
    cases["npy float labels"] = (train(npy_set(t / "n6", digits, labels + 0.5)),
                                 ("n6", "whole numbers"))
    cases["npy label 10^12"] = (train(npy_set(t / "n7", digits, labels * 10**12)),
                                ("n7", "too large"))
    cases["npz label/array length mismatch"] = (
        train(_npz(t / "m.npz", x=digits, y=labels[:7])), ("m.npz", "7 labels for 40 images"))
    np.save(_write(t / "n8" / "d_images.npy", b"garbage" * 20) / "d_labels.npy", labels)
    cases["not an npy file"] = (train(t / "n8"), ("d_images.npy", "not a valid .npy"))

    cifar = t / "cifar-10-batches-py"
    cifar.mkdir()
    (cifar / "data_batch_1").write_bytes(pickle.dumps({b"pixels": np.zeros((2, 3072), "u1"),
                                                       b"labels": [0, 1]}))
    cases["cifar batch with wrong keys"] = (train(cifar),
                                            ("data_batch_1", "needs 'data' and 'labels' keys"))
    _write(t / "i" / "train-labels-idx1-ubyte", b"\0\0\x08\x01\0\0\0\x02\0\1")
    cases["idx with a bad header"] = (train(_write(t / "i" / "train-images-idx3-ubyte",
                                                   b"\0\0\x08\x03" + b"\0" * 7)),
                                      ("idx3-ubyte", "truncated idx header"))

    data, root = model["data"], model["root"]
    for name, ckpt, words in (
            ("checkpoint of another architecture", "other_arch.pt", ("do not fit",)),
            ("checkpoint from a newer format", "newer.pt", ("format 99", "upgrade cnnlab")),
            ("truncated checkpoint", "truncated.pt", ("not a readable checkpoint",)),
            ("missing checkpoint", "absent.pt", ("checkpoint not found",))):
        cases[f"predict: {name}"] = (["predict", "--weights", root / ckpt, data, "--output",
                                      t / "p.csv"], (ckpt, *words))
    cases["evaluate: data with classes the model does not know"] = (
        ["evaluate", "--weights", model["good"],
         write_image_folder(t / "three", n_per_class=3, size=16, classes=3)],
        ("classes (class0, class1, class2) differ from the model's (class0, class1)",))
    return cases


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path.parent


@pytest.mark.slow
def test_every_bad_input_is_one_clear_line(zygote, model, tmp_path: Path):
    cases = bad_cases(tmp_path, model)
    assert len(cases) >= 30
    failures = []
    for name, (argv, words) in cases.items():
        res = zygote.run(*argv, cwd=tmp_path)
        try:
            assert_one_line_error(res, *words)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_fresh_cnnlab_process_reports_bad_input_in_one_line(tmp_path: Path):
    bad = folder_with(tmp_path / "bomb", "bomb.png", bomb_png)
    res = run_cli("train", bad, "--out", tmp_path / "run")
    assert_one_line_error(res, "bomb.png", "too large")


def test_debug_flag_shows_the_traceback(zygote, tmp_path: Path):
    res = zygote.run("--debug", "train", tmp_path / "nope")
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_skip_bad_skips_and_counts_unreadable_images(zygote, tmp_path: Path):
    root = write_image_folder(tmp_path / "imgs", n_per_class=6, size=16, classes=2)
    (root / "class0" / "empty.jpg").write_bytes(b"")
    (root / "class1" / "notes.png").write_text("not an image")
    truncated(root / "class1" / "cut.jpg", "JPEG")
    bomb_png(root / "class0" / "bomb.png")
    args = ["train", root, "--model-arg", "width=4", "--image-size", "16", "--epochs", "1",
            "--no-report"]
    without = zygote.run(*args, "--out", tmp_path / "a")
    line = assert_one_line_error(without, "(and 3 more; --skip-bad skips them)")
    assert "bomb.png" in line or "empty.jpg" in line
    res = zygote.run(*args, "--skip-bad", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "skipped 4 unreadable image(s)" in res.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["skipped_bad_images"] == 4
    n = sum(metrics[s]["n"] for s in ("train", "val", "test"))
    assert n == 12


def test_odd_images_are_converted_correctly(zygote, tmp_path: Path):
    root = tmp_path / "odd"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
    # CMYK JPEG of pure red
    Image.new("CMYK", (12, 12), (0, 255, 255, 0)).save(root / "a" / "cmyk.jpg")
    # 16-bit grayscale PNG: left half 128/255 of full scale, right half 0
    g16 = np.zeros((12, 12), np.uint16)
    g16[:, :6] = 128 * 257
    Image.fromarray(g16).save(root / "a" / "g16.png")
    # RGBA: opaque red on the left, fully transparent green on the right
    rgba = np.zeros((12, 12, 4), np.uint8)
    rgba[:, :6] = (255, 0, 0, 255)
    rgba[:, 6:] = (0, 255, 0, 0)
    Image.fromarray(rgba, "RGBA").save(root / "b" / "rgba.png")
    # palette PNG: blue left, yellow right
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[:, :6] = (0, 0, 255)
    rgb[:, 6:] = (255, 255, 0)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4) \
        .save(root / "b" / "pal.png")
    Image.new("RGB", (1, 1), (10, 200, 30)).save(root / "b" / "one.png")
    # EXIF orientation 6 ("rotate 90 clockwise to display"): stored red left, blue right,
    # so the displayed photo has red on top and blue at the bottom
    photo = np.zeros((20, 40, 3), np.uint8)
    photo[:, :20] = (255, 0, 0)
    photo[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(root / "a" / "exif.jpg", exif=exif, quality=95)

    def px(name: str, size: int = 8, channels: int = 3) -> np.ndarray:
        return decode_image(root / name, (size, size), channels, "stretch").astype(int)

    cmyk = px("a/cmyk.jpg")
    assert cmyk[0].min() > 200 and cmyk[1].max() < 60 and cmyk[2].max() < 60
    g = px("a/g16.png", channels=1)[0]
    assert abs(g[4, 0] - 128) <= 2 and g[4, 7] == 0
    r = px("b/rgba.png")
    assert tuple(r[:, 4, 0]) == (255, 0, 0) and tuple(r[:, 4, 7]) == (0, 0, 0)
    p = px("b/pal.png")
    assert tuple(p[:, 4, 0]) == (0, 0, 255) and tuple(p[:, 4, 7]) == (255, 255, 0)
    one = px("b/one.png")
    assert (one[:, :, :] == np.array([10, 200, 30])[:, None, None]).all()
    e = px("a/exif.jpg")
    assert e.shape == (3, 8, 8)
    top_right, bottom_left = e[:, 0, 7], e[:, 7, 0]
    assert top_right[0] > 200 and top_right[2] < 60, "EXIF orientation not applied"
    assert bottom_left[2] > 200 and bottom_left[0] < 60, "EXIF orientation not applied"
    # the CLI trains on the whole odd set without complaint
    res = zygote.run("train", root, "--model-arg", "width=4", "--image-size", "8",
                     "--epochs", "1", "--val-split", "0.2", "--test-split", "0.2",
                     "--no-report", "--out", tmp_path / "run")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr


def test_non_utf8_file_name_is_read_and_reported(zygote, model, tmp_path: Path):
    root = write_image_folder(tmp_path / "imgs", n_per_class=3, size=16, classes=2)
    raw = os.fsencode(root / "class0") + b"/caf\xe9.png"
    fd = os.open(raw, os.O_WRONLY | os.O_CREAT, 0o644)
    with os.fdopen(fd, "wb") as fh:
        noise(16).save(fh, format="PNG")
    out = tmp_path / "pred.csv"
    res = zygote.run("predict", "--weights", model["good"], root, "--split", "all",
                     "--output", out)
    assert res.returncode == 0, res.stderr
    text = out.read_bytes().decode("utf-8")  # valid UTF-8: the odd byte is escaped
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 7
    assert any(r["id"] == "class0/caf\\udce9.png" for r in rows), [r["id"] for r in rows]
    # and a bad file with such a name is named in the one error line
    bad = os.fsencode(root / "class1") + b"/d\xe9j\xe0.png"
    with open(bad, "wb") as fh:
        fh.write(b"")
    res = zygote.run("train", root, "--epochs", "1", "--out", tmp_path / "run")
    assert_one_line_error(res, "d\\udce9j\\udce0.png", "empty file")


def test_duplicate_csv_rows_are_dropped_and_counted(tmp_path: Path):
    index = csv_set(tmp_path / "c", lambda rows: rows + rows[:3])
    data = cnnlab.data(index)
    total = sum(len(s) for _, s in data.items())
    assert total == 8
    assert data.train.meta["duplicate_rows_dropped"] == 3
