"""experiment.html: every experiment (sweep, cv, seeds, compare, transfer, search) writes one
self-contained page; headless Chromium renders it with every image loaded and every member link
pointing at a file that exists."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from conftest import ROOT, chromium_page, write_pattern_npy

from cnnlab.data.load import LoadOptions, load_data
from cnnlab.experiments import compare_runs, run_cv, run_seeds, run_sweep
from cnnlab.experiments.transfer import compare_transfer
from cnnlab.settings import TrainConfig

ARTIFACTS = ROOT / "test-artifacts"
BASE = {"model": "mlp", "model_args": {"hidden": 16}, "epochs": 2, "batch_size": 32,
        "num_threads": 1, "report": False, "extra": {"plots": False}, "device": "cpu"}


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One small experiment of each kind; {kind: experiment folder}."""
    root = tmp_path_factory.mktemp("pages")
    data = write_pattern_npy(root / "pat", 30)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(root / "cache"))
        splits = load_data(data, LoadOptions())
        base = TrainConfig(**BASE, data=str(data))
        # the sweep's members write their reports: the page links them
        sweep = run_sweep(TrainConfig(**{**BASE, "report": True}, data=str(data)),
                          {"lr": [1e-3, 3e-2]}, splits=splits, out=root / "sweep",
                          verbose=False)
        run_cv(base, folds=2, splits=splits, out=root / "cv", verbose=False)
        run_seeds(base, n=2, splits=splits, out=root / "seeds", verbose=False)
        compare_runs([root / "sweep", root / "seeds"], out=root / "compare", verbose=False)
        compare_transfer(sweep.best.run_dir / "best.pt", base, [1], root / "transfer",
                         verbose=False)
        from cnnlab.experiments.search import run_search

        run_search(TrainConfig(**{**BASE, "report": True}, data=str(data)),
                   {"lr": {"type": "categorical", "choices": [1e-3, 3e-2]}}, out=root / "search",
                   trials=2, pruner="none", verbose=False)
    return {k: root / k for k in ("sweep", "cv", "seeds", "compare", "transfer", "search")}


def _members(folder: Path) -> int:
    table = next((folder / n for n in ("transfer.csv", "leaderboard.csv")
                  if (folder / n).is_file()), None)
    if table is not None:
        with open(table) as fh:
            return len(list(csv.DictReader(fh)))
    rows = json.loads((folder / "summary.json").read_text())["rows"]
    return sum(1 for r in rows if str(next(iter(r.values()))) not in ("mean", "std", "min",
                                                                        "max"))


@pytest.mark.slow  # trains 11 tiny runs (shared with the browser test)
def test_every_experiment_writes_a_self_contained_page(pages: dict[str, Path]) -> None:
    for kind, folder in pages.items():
        page = (folder / "experiment.html").read_text()
        assert page.count("<img") == 1 and 'src="data:image/png;base64,' in page, kind
        assert "<script src" not in page and "<link" not in page, kind  # nothing fetched
        assert page.count('href="') - page.count('href="#') >= _members(folder), kind
    sweep = (pages["sweep"] / "experiment.html").read_text()
    assert sweep.count("report</a>") == 2 and sweep.count('<tr class="best">') == 1
    best = json.loads((pages["sweep"] / "summary.json").read_text())["best"]["member"]
    row = sweep.split('<tr class="best">')[1].split("</tr>")[0]
    assert f">{best}<" in row
    search = (pages["search"] / "experiment.html").read_text()
    assert search.count("report</a>") == 2 and search.count('<tr class="best">') == 1
    best = json.loads((pages["search"] / "search.json").read_text())["best"]["trial"]
    assert f">{best}<" in search.split('<tr class="best">')[1].split("</tr>")[0]


@pytest.mark.slow
def test_pages_render_in_chromium_with_every_image_and_link(pages: dict[str, Path]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    seen = {}
    with chromium_page() as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        for kind, folder in pages.items():
            page.goto((folder / "experiment.html").resolve().as_uri(), wait_until="load")
            imgs = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
            links = page.eval_on_selector_all(
                "tbody a", "els => els.map(e => [e.textContent, e.href])")
            rows = page.eval_on_selector_all("tbody tr", "els => els.length")
            seen[kind] = (imgs, links, rows)
            page.screenshot(path=str(ARTIFACTS / f"experiment-{kind}.png"), full_page=True)
        # a member's report link opens that member's report, itself fully rendered
        page.goto((pages["sweep"] / "experiment.html").resolve().as_uri())
        page.click("tbody a:text('report')")
        page.wait_for_load_state("load")
        assert page.url.endswith("/report.html")
        report_imgs = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth])")
    assert errors == []
    for kind, (imgs, links, rows) in seen.items():
        assert len(imgs) == 1 and all(ok and w > 300 for ok, w, _ in imgs), (kind, imgs)
        members = _members(pages[kind])
        assert rows >= members and len(links) >= members, (kind, rows, links)
        for text, href in links:
            target = Path(unquote(urlparse(href).path))
            assert target.exists(), (kind, text, href)
            if text == "folder":
                assert (target / "config.yaml").is_file(), (kind, href)
    assert report_imgs and all(ok and w > 0 for ok, w in report_imgs)


def test_page_of_given_rows_links_members_marks_the_best_and_embeds_the_curves(
        tmp_path: Path) -> None:
    from PIL import Image

    from cnnlab.report.experiment_page import build_experiment_page

    folder = tmp_path / "exp"
    runs = [folder / "members" / n for n in ("lr=1e-05", "lr=0.1")]
    for r in runs:
        r.mkdir(parents=True)
        (r / "config.yaml").write_text("model: cnn\n")
    (runs[1] / "report.html").write_text("<html></html>")
    Image.new("RGB", (400, 200), "white").save(folder / "curves.png")
    rows = [{"member": "lr=1e-05", "lr": 1e-5, "val_accuracy": 0.5, "best": False},
            {"member": "lr=0.1", "lr": 0.1, "val_accuracy": 0.9, "best": True},
            {"member": "mean", "val_accuracy": 0.7}]
    page = build_experiment_page(folder, "A <sweep>", rows, runs,
                                 {"kind": "sweep", "grid": {"lr": [1e-5, 0.1]},
                                  "best": {"member": "lr=0.1"}, "rows": rows}).read_text()
    assert "<h1>A &lt;sweep&gt;</h1>" in page and page.count('src="data:image/png;base64,') == 1
    assert ">1e-05<" in page  # a small learning rate keeps its digits
    best = page.split('<tr class="best">')[1].split("</tr>")[0]
    assert ">lr=0.1<" in best and 'href="members/lr=0.1/report.html"' in best
    # the member without a report links its folder only; the mean row links nothing
    assert 'href="members/lr=1e-05/"' in page and "members/lr=1e-05/report.html" not in page
    assert page.split("<tbody>")[1].split("</tr>")[2].count("href") == 0
    assert "<th>best</th>" in page and ">lr=0.1</td>" in page  # the setup facts
