"""cnnlab doctor: planted leaks, duplicates, flipped labels, blanks and shift are all found."""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, chromium_page, digits_arrays
from PIL import Image

from cnnlab.cli import main as cli_main
from cnnlab.data.load import LoadOptions, load_data
from cnnlab.doctor import CHECKS, run_doctor
from cnnlab.errors import CnnlabError

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

SIZE = 24  # digits 8x8 scaled x3: small files, fast decode, still distinct images
KEYS = ("duplicates", "leaks", "label_issues", "outliers", "balance", "shift")


def _save(root: Path, part: str, label: int, name: str, img: np.ndarray) -> str:
    folder = root / part / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(folder / name)
    return f"{part}/{label}/{name}"


def write_digits(root: Path, plant: bool = False, shift: bool = False,
                 sizes: tuple[int, int, int] = (600, 150, 200)) -> dict:
    """train/val/test class folders of sklearn digits; `plant` adds known problems.

    Returns the ids of what was planted: leaks (held-out ids with a copy in train), exact
    duplicates inside train, flipped labels and blank images.
    """
    x, y = digits_arrays()
    x = np.kron(x, np.ones((3, 3), dtype=np.uint8))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    a, b, c = np.cumsum(sizes)
    parts = {"train": order[:a], "val": order[a:b], "test": order[b:c]}
    ids: dict[str, list[int]] = {n: [] for n in parts}
    planted: dict = {"leaks": [], "exact_leaks": [], "dups": [], "flipped": [], "blank": [],
                     "odd": []}
    flip = set(parts["train"][:20].tolist()) if plant else set()
    for part, idx in parts.items():
        for i in idx:
            img = x[i]
            if shift and part == "test":
                img = np.clip(img.astype(int) + 70, 0, 255).astype(np.uint8)  # brighter scans
            lab = int(y[i])
            if i in flip:
                lab = (lab + 1 + int(rng.integers(0, 9))) % 10  # never the true class
                planted["flipped"].append(_save(root, part, lab, f"d{i:04d}.png", img))
            else:
                _save(root, part, lab, f"d{i:04d}.png", img)
            ids[part].append(i)
    if plant:
        test = parts["test"]
        for k, i in enumerate(test[:12]):  # 8 exact copies and 4 altered copies in train
            img = x[i]
            tid = f"test/{y[i]}/d{i:04d}.png"
            if k >= 8:
                noise = rng.integers(-6, 7, img.shape)
                img = np.clip(img.astype(int) + 10 + noise, 0, 255).astype(np.uint8)
            else:
                planted["exact_leaks"].append(tid)
            _save(root, "train", int(y[i]), f"leak{k:02d}.png", img)
            planted["leaks"].append(tid)
        for k, i in enumerate(parts["train"][100:103]):
            planted["dups"].append((f"train/{y[i]}/d{i:04d}.png",
                                    _save(root, "train", int(y[i]), f"dup{k}.png", x[i])))
        for k in range(5):
            blank = np.full((SIZE, SIZE), 40 * k, dtype=np.uint8)
            if k == 4:
                blank = (blank + rng.integers(0, 2, blank.shape)).astype(np.uint8)
            planted["blank"].append(_save(root, "train", k, f"blank{k}.png", blank))
        # Pictures unlike any digit: a checkerboard and a negative scan (white background).
        checker = (np.indices((SIZE, SIZE)).sum(0) // 3 % 2 * 255).astype(np.uint8)
        negative = 255 - x[parts["train"][150]]
        for k, img in enumerate((checker, negative)):
            planted["odd"].append(_save(root, "train", 5 + k, f"odd{k}.png", img))
    return planted


def cli(*args: str) -> int:
    """Run the real CLI entry point in-process; its exit code."""
    try:
        cli_main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def doctor_opts() -> LoadOptions:
    """Decode at the files' own size, so the test stays fast."""
    return LoadOptions(image_size=SIZE, channels=1)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A planted data set and the doctor's report on it (with --fix)."""
    root = tmp_path_factory.mktemp("doctor")
    data = root / "data"
    truth = write_digits(data, plant=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(root / "cache"))
        report = run_doctor(data, doctor_opts(), out=root / "out", fix=True, verbose=False)
    return root, truth, report


def test_doctor_json_has_the_sections_and_names_files(planted: tuple) -> None:
    root, _, report = planted
    saved = json.loads((root / "out" / "doctor.json").read_text())
    assert set(KEYS) <= set(saved)
    first = saved["leaks"]["items"][0]
    assert Path(first["path"]).is_file() and first["id"].startswith("test/")


def test_every_planted_leak_and_exact_duplicate_is_found(planted: tuple) -> None:
    _, truth, report = planted
    leaked = {r["id"]: r for r in report["leaks"]["items"]}
    assert set(truth["leaks"]) <= set(leaked), set(truth["leaks"]) - set(leaked)
    assert set(leaked) == set(truth["leaks"])  # and nothing else
    assert all(leaked[t]["exact"] for t in truth["exact_leaks"])
    assert any(not leaked[t]["exact"] for t in truth["leaks"])  # altered copies are near ones
    groups = [{i["id"] for i in g["items"]} for g in report["duplicates"]["groups"]
              if g["kind"] == "exact"]
    for a, b in truth["dups"]:
        assert any({a, b} <= g for g in groups), (a, b)


def test_flipped_labels_rank_near_the_top(planted: tuple) -> None:
    _, truth, report = planted
    assert report["label_issues"]["reliable"] is True
    ranked = [r["id"] for r in report["label_issues"]["items"]]
    found = [f for f in truth["flipped"] if f in set(ranked)]
    # The target of issue #22: at most 3x the planted flips flagged, at least half of them found.
    assert len(ranked) <= 3 * len(truth["flipped"]), len(ranked)
    assert len(found) >= len(truth["flipped"]) / 2, (len(found), len(ranked))
    first = next(r for r in report["label_issues"]["items"] if r["id"] in truth["flipped"])
    assert first["given"] != first["suggested"]


def test_blank_and_alien_images_are_outliers(planted: tuple) -> None:
    _, truth, report = planted
    blank = {r["id"] for r in report["outliers"]["items"] if r["kind"] == "blank"}
    assert blank == set(truth["blank"])
    far = [r["id"] for r in report["outliers"]["items"] if r["kind"] == "far"]
    assert set(truth["odd"]) <= set(far[:5]), far


def test_clean_data_has_no_leak_and_a_shifted_test_split_is_flagged(tmp_path: Path) -> None:
    clean, shifted = tmp_path / "clean", tmp_path / "shifted"
    write_digits(clean, sizes=(300, 80, 120))
    write_digits(shifted, shift=True, sizes=(300, 80, 120))
    a = run_doctor(clean, doctor_opts(), out=tmp_path / "a", skip=("labels",), verbose=False)
    b = run_doctor(shifted, doctor_opts(), out=tmp_path / "b", skip=("labels", "duplicates"),
                   verbose=False)
    assert a["leaks"]["n"] == 0 and a["duplicates"]["n_groups"] == 0
    assert a["shift"]["train_vs_test"]["auroc"] < 0.65
    assert b["shift"]["train_vs_test"]["auroc"] > 0.9
    assert b["shift"]["train_vs_test"]["verdict"] == "strong shift"
    assert any("shift between train and test" in f for f in b["summary"]["findings"])


# What each check writes to doctor.json, and the progress phase it runs in (balance has none).
WRITES = {"duplicates": (("duplicates", "leaks"), "duplicates"),
          "labels": (("label_issues",), "labels"),
          "outliers": (("outliers", "unusual_files"), "outliers"),
          "balance": (("balance",), None), "shift": (("shift",), "shift")}


def test_every_skip_name_leaves_out_its_check_and_only_it(tmp_path: Path) -> None:
    assert [c.name for c in CHECKS] == list(WRITES)  # a new check: add its row above
    data = tmp_path / "d"
    write_digits(data, sizes=(150, 40, 40))
    for name in WRITES:
        r = run_doctor(data, doctor_opts(), out=tmp_path / name, skip=(name,), folds=3,
                       verbose=False)
        page = (tmp_path / name / "doctor.html").read_text()
        assert r["summary"]["not_checked"] == [name] and f"--skip {name}" in page
        for other, (other_keys, other_phase) in WRITES.items():
            skipped = [r[k].get("skipped") == f"--skip {other}" for k in other_keys]
            assert skipped == [other == name] * len(other_keys), (name, other)
            if other_phase:
                assert (other_phase in r["timings"]) == (other != name), (name, other)
        assert ("counts" in r["balance"]) == (name != "balance")
    with pytest.raises(CnnlabError, match=r"^--skip colour: choose from duplicates, labels, "
                                          r"outliers, balance, shift$"):
        run_doctor(data, doctor_opts(), out=tmp_path / "x", skip=("colour",), verbose=False)


def test_missing_class_in_a_split_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_digits(data, sizes=(200, 50, 80))
    for f in (data / "test" / "7").iterdir():
        f.unlink()
    (data / "test" / "7").rmdir()
    r = run_doctor(data, doctor_opts(), out=tmp_path / "o", skip=("labels", "duplicates",
                                                                  "shift"), verbose=False)
    assert r["balance"]["missing"] == {"test": ["7"]}
    assert r["balance"]["counts"]["test"][7] == 0


@pytest.mark.slow
def test_fix_csv_has_no_leaked_rows_and_trains(planted: tuple, tmp_path: Path) -> None:
    root, truth, report = planted
    fix = report["fix"]
    with open(fix["path"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    names = {r["filename"] for r in rows}
    assert not any(Path(n).name.startswith("leak") for n in names if n.startswith("train/"))
    assert set(truth["leaks"]) <= names  # the held-out originals stay
    assert sum(Path(n).name.startswith("dup") for n in names) == 0  # one copy kept per split
    review = {r["filename"]: r for r in rows if r["doctor_review"]}
    assert set(truth["flipped"]) & set(review)
    flipped = next(iter(set(truth["flipped"]) & set(review)))
    # Never relabelled: the given label stays; the suggestion sits in its own column.
    assert review[flipped]["semantic_label"] == flipped.split("/")[1]
    assert review[flipped]["doctor_suggested_label"] != review[flipped]["semantic_label"]
    splits = load_data(fix["path"], LoadOptions(image_dir=fix["image_dir"], image_size=SIZE,
                                                channels=1))
    assert len(splits.train) == 600 + 5 + 2  # originals, blanks, odd ones: copies removed
    run = tmp_path / "run"
    assert cli("train", fix["path"], "--image-dir", fix["image_dir"], "--epochs", "1",
               "--image-size", str(SIZE), "--channels", "1", "--model-arg", "width=8",
               "--out", str(run), "--no-report", "--device", "cpu") == 0
    assert (run / "best.pt").is_file()
    # The trained model measures what the leaks are worth on the original data.
    r = run_doctor(root / "data", doctor_opts(), out=tmp_path / "w", weights=run / "best.pt",
                   skip=("labels", "outliers", "shift"), verbose=False)
    eff = r["leaks"]["effect"]["test"]
    assert eff["n_leaked"] == 12 and eff["n"] == 200
    assert eff["accuracy_without_leaks"] is not None


def test_cli_writes_page_and_prints_findings(tmp_path: Path, capsys: pytest.CaptureFixture
                                             ) -> None:
    data = tmp_path / "d"
    write_digits(data, plant=True)
    out = tmp_path / "o"
    assert cli("doctor", str(data), "--image-size", str(SIZE), "--channels", "1", "--out",
               str(out), "--skip", "labels", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["leaks"] == 12
    page = (out / "doctor.html").read_text()
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(https?:)?//', page)
    srcs = re.findall(r'<img class="thumb" src="([^"]+)"', page)
    assert len(srcs) >= 24 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.count('data-leak="') == 12


def test_missing_cleanlab_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "cleanlab", None)  # import cleanlab -> ImportError
    assert cli("doctor", "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install" in err and "cleanlab" in err


def test_array_source_fix_writes_npz_that_loads(tmp_path: Path) -> None:
    x, y = digits_arrays(400)
    x = x.copy()
    x[300:310] = x[:10]  # ten training images repeated in what becomes test
    npz = tmp_path / "d.npz"
    np.savez(npz, x_train=x[:300], y_train=y[:300], x_test=x[300:], y_test=y[300:])
    r = run_doctor(npz, LoadOptions(val_split=0.0), out=tmp_path / "o", fix=True,
                   skip=("labels",), verbose=False)
    assert r["leaks"]["n"] == 10 and r["fix"]["kind"] == "npz"
    again = load_data(r["fix"]["path"], LoadOptions(val_split=0.0))
    assert len(again.train) == 290 and len(again.test) == 100


def test_doctor_page_renders_in_chromium_with_every_image(planted: tuple) -> None:
    root, _, report = planted
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with chromium_page() as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto((root / "out" / "doctor.html").resolve().as_uri(), wait_until="load")
        imgs = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
        leaks = page.eval_on_selector_all("[data-leak]", "els => els.length")
        page.screenshot(path=str(artifacts / "doctor.png"), full_page=False)
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert len(imgs) >= 30 and all(ok and w > 0 for ok, w, _ in imgs)
    assert leaks == report["leaks"]["n"] == 12


def test_csv_source_with_train_column_options(tmp_path: Path) -> None:
    """The data options of train reach the loader: a CSV with its own column names."""
    data = tmp_path / "d"
    truth = write_digits(data, plant=True, sizes=(200, 50, 80))
    rows = [{"file": p.relative_to(data).as_posix(), "cls": p.parent.name,
             "split": p.parts[-3]} for p in sorted(data.rglob("*.png"))]
    index = data / "index.csv"
    with open(index, "w", newline="") as fh:
        w = csv.DictWriter(fh, ["file", "cls", "split"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "o"
    assert cli("doctor", str(index), "--path-column", "file", "--label-column", "cls",
               "--partition-column", "split", "--image-size", str(SIZE), "--channels", "1",
               "--skip", "labels", "--fix", "--out", str(out)) == 0
    report = json.loads((out / "doctor.json").read_text())
    assert {r["id"] for r in report["leaks"]["items"]} == set(truth["leaks"])
    fixed = load_data(report["fix"]["path"], LoadOptions(image_dir=report["fix"]["image_dir"],
                                                         image_size=SIZE, channels=1))
    assert len(fixed.train) == 200 + 5 + 2 and len(fixed.test) == 80


@pytest.mark.slow
def test_backbone_features_find_the_shift_too(tmp_path: Path) -> None:
    """--features backbone: the pretrained EfficientNet-Lite0 features feed the same checks."""
    data = tmp_path / "d"
    write_digits(data, shift=True, sizes=(120, 30, 60))
    r = run_doctor(data, LoadOptions(image_size=32, channels=3), out=tmp_path / "o",
                   feature_kind="backbone", skip=("duplicates", "outliers"), folds=3,
                   verbose=False)
    assert r["settings"]["features"] == "backbone"
    assert r["shift"]["train_vs_test"]["auroc"] > 0.9
    assert r["label_issues"]["summary"]["out_of_sample_accuracy"] > 0.5


def test_unlabeled_folder_odd_files_and_copies(tmp_path: Path) -> None:
    """A flat folder (no labels): file-header oddities and copies are still found."""
    rng = np.random.default_rng(0)
    data = tmp_path / "flat"
    data.mkdir()
    for i in range(30):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)).save(data / f"{i}.png")
    (data / "3copy.png").write_bytes((data / "3.png").read_bytes())
    Image.fromarray(rng.integers(0, 255, (200, 30, 3)).astype(np.uint8)).save(data / "tall.png")
    Image.fromarray(rng.integers(0, 255, (20, 30)).astype(np.uint8)).save(data / "gray.png")
    r = run_doctor(data, LoadOptions(image_size=16), out=tmp_path / "o", verbose=False)
    odd = {o["id"]: o["why"] for o in r["unusual_files"]["items"]}
    assert set(odd) == {"tall.png", "gray.png"}
    assert "aspect ratio" in odd["tall.png"] and "mode L" in odd["gray.png"]
    groups = [{i["id"] for i in g["items"]} for g in r["duplicates"]["groups"]]
    assert groups == [{"3.png", "3copy.png"}]
    assert r["label_issues"]["skipped"] and r["leaks"]["n"] == 0


def test_train_doctor_writes_the_doctor_page_into_the_run(tmp_path: Path) -> None:
    import cnnlab

    r = cnnlab.train(model="mlp", epochs=1, doctor=True, out=str(tmp_path / "run"),
                     report=False, verbose=False)
    doc = json.loads((r.run_dir / "doctor" / "doctor.json").read_text())
    assert {"duplicates", "leaks", "label_issues", "outliers", "balance", "shift"} <= set(doc)
    assert (r.run_dir / "doctor" / "doctor.html").stat().st_size > 1000


def test_files_skipped_as_unreadable_are_named_not_dropped_silently(tmp_path: Path) -> None:
    """With --skip-bad the doctor still says which files it could not read (nothing checked
    them): a count in the summary line, a finding naming them, the list in doctor.json."""
    from conftest import write_image_folder

    from cnnlab.doctor.run import summary_line

    data = write_image_folder(tmp_path / "imgs", n_per_class=8)
    (data / "class0" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(CnnlabError, match="broken.png: not a readable image"):
        run_doctor(data, LoadOptions(image_size=16), out=tmp_path / "a", skip=("labels",),
                   verbose=False)
    r = run_doctor(data, LoadOptions(image_size=16, skip_bad=True), out=tmp_path / "b",
                   skip=("labels",), verbose=False)
    assert r["unreadable_files"] == {"n": 1, "items": ["class0/broken.png"]}
    assert summary_line(r["summary"]).endswith(", 1 unreadable file skipped")
    finding = ("1 file could not be read as an image and was skipped (--skip-bad), so nothing "
               "above checked it: class0/broken.png (all in doctor.json).")
    assert finding in r["summary"]["findings"]
    assert finding in (tmp_path / "b" / "doctor.html").read_text()
    on_disk = json.loads((tmp_path / "b" / "doctor.json").read_text())
    assert on_disk["unreadable_files"]["items"] == ["class0/broken.png"]
    (data / "class0" / "broken.png").unlink()
    clean = run_doctor(data, LoadOptions(image_size=16, skip_bad=True), out=tmp_path / "c",
                       skip=("labels",), verbose=False)
    assert clean["unreadable_files"] == {"n": 0, "items": []}
    assert "unreadable" not in summary_line(clean["summary"])
