"""report.html: self-contained, rendered in headless Chromium, numbers equal metrics.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, chromium_page, write_corner_folder

import cnnlab
from cnnlab.cli import main as cli_main
from cnnlab.errors import CnnlabError
from cnnlab.htmlkit import Section, esc
from cnnlab.report import html as report_html
from cnnlab.report.html import build_report
from cnnlab.report.summary import imbalance

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

SECTIONS = ("summary", "data", "curves", "metrics", "confusion", "roc", "thresholds", "failures",
            "gradcam", "robustness")


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small CNN run whose training wrote report.html (skewed classes, 4:1)."""
    root = tmp_path_factory.mktemp("report")
    data = write_corner_folder(root / "data", (100, 25), size=24, square=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(root / "cache"))
        run = cnnlab.train(data=data, model="cnn", epochs=3, image_size=24, channels=1,
                           model_args={"width": 8}, batch_size=16, out=str(root / "run"),
                           verbose=False, device="cpu")
    return run.run_dir


def _section(page: str, key: str) -> str:
    m = re.search(rf'<section id="{key}">(.*?)</section>', page, re.S)
    assert m, f"section {key} missing"
    return m.group(1)


def _lookup(metrics: dict, path: str) -> object:
    split, rest = path.split(".", 1)
    if rest.startswith("per_class."):
        cls, key = rest[len("per_class."):].rsplit(".", 1)
        return metrics[split]["per_class"][cls][key]
    return metrics[split][rest]


def test_training_writes_a_self_contained_report(cnn_run: Path) -> None:
    page = (cnn_run / "report.html").read_text()
    assert re.findall(r"<script[^>]*>", page, re.I) == ["<script>"]  # one inline script only
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from elsewhere
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) >= 5 and all(re.match(r"data:image/(png|jpeg);base64,", s) for s in srcs)
    for key in SECTIONS:
        body = _section(page, key)
        assert "could not build" not in body and "skipped" not in body, (key, body[:300])
    assert "<img" in _section(page, "gradcam") and "<img" in _section(page, "failures")
    assert 'data-robust="noise 0.1"' in _section(page, "robustness")
    assert 'id="imbalance-flag"' in page  # 4:1 training classes are flagged
    for name in ("failures", "gradcam", "robustness", "curves", "confusion_matrix", "roc_pr"):
        assert (cnn_run / "plots" / f"{name}.png").stat().st_size > 1000
    # Binary task: the threshold table names the thresholds with the best F1 and balanced acc.
    thr = _section(page, "thresholds")
    assert 'data-best="' in thr and "best F1" in thr and "best balanced acc." in thr
    assert re.search(r'data-best="[^"]*balanced_accuracy', thr) and "prob_right" in thr
    assert "<img" in _section(page, "roc") and "Positive class: <b>right</b>" in page
    # The F1 card says which F1 it is; the run's files are linked (relative paths).
    assert "test F1 of right" in _section(page, "summary")
    for name in ("best.pt", "predictions.csv", "metrics.json"):
        assert f'<a href="{name}" data-file="{name}">' in page
    assert page.count('class="sortable grid') >= 4


def test_report_renders_in_chromium_with_the_metrics_of_metrics_json(cnn_run: Path) -> None:
    metrics = json.loads((cnn_run / "metrics.json").read_text())
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with chromium_page() as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((cnn_run / "report.html").resolve().as_uri(), wait_until="load")
        imgs = page.eval_on_selector_all(
            "img", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
        shown = page.eval_on_selector_all(
            "[data-metric]", "els => els.map(e => [e.dataset.metric, e.textContent])")
        page.screenshot(path=str(artifacts / "report.png"), full_page=True)
    assert errors == []
    assert len(imgs) >= 5 and all(ok and w > 0 for ok, w, _ in imgs), imgs
    paths = {path for path, _ in shown}
    for split in ("train", "val", "test"):
        assert f"{split}.accuracy" in paths and f"{split}.auroc" in paths
    assert "test.per_class.right.recall" in paths and "baselines.majority" in paths
    for path, text in shown:
        want = metrics["baselines"][path.split(".")[1]] if path.startswith("baselines.") \
            else _lookup(metrics, path)
        if want is None:
            assert text.strip() == "\u2013", path
        elif isinstance(want, int):
            assert int(text) == want, path
        else:
            assert abs(float(text) - want) <= 5e-5, (path, text, want)
    assert (artifacts / "report.png").stat().st_size > 10_000


def test_report_command_rebuilds_from_the_run_folder(cnn_run: Path, tmp_path: Path) -> None:
    (cnn_run / "report.html").unlink()
    cli_main(["report", str(cnn_run)])  # in-process: test_explain runs the real binary
    page = (cnn_run / "report.html").read_text()
    # Model and data reloaded from best.pt and config.yaml: the image sections are back.
    for key in ("failures", "gradcam", "robustness"):
        assert "<img" in _section(page, key) and "skipped" not in _section(page, key)
    with pytest.raises(SystemExit) as exc:
        cli_main(["report", str(tmp_path / "nothing-here")])
    assert exc.value.code == 2


def test_mlp_run_without_report_then_report_skips_gradcam(tmp_path: Path) -> None:
    data = write_corner_folder(tmp_path / "data", (30, 30), size=16, square=4)
    run = cnnlab.train(data=data, model="mlp", epochs=1, image_size=16, channels=1,
                       out=str(tmp_path / "run"), report=False, verbose=False, device="cpu")
    assert not (run.run_dir / "report.html").exists()  # --no-report
    page = build_report(run.run_dir).read_text()
    assert "Grad-CAM needs convolution layers" in _section(page, "gradcam")
    assert "<img" in _section(page, "failures") and "<img" in _section(page, "robustness")
    assert 'id="imbalance-flag"' not in page
    # Data gone: the report still shows the numbers and says why the galleries are missing.
    shutil.rmtree(data)
    page = build_report(run.run_dir).read_text()
    assert "could not reload the run&#x27;s data" in page
    assert 'data-metric="test.accuracy"' in page and "<img" not in _section(page, "failures")
    with pytest.raises(CnnlabError, match="not a cnnlab run folder"):
        build_report(tmp_path)


def test_a_section_added_to_the_list_is_on_the_page_and_none_leaves_it_off(
        cnn_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(cnn_run, run)
    extra = Section("extra", "Extra <b>", lambda ctx: f"<p id='x'>{esc(ctx.run_dir.name)} "
                                                      f"{len(ctx.classes)} classes</p>")
    absent = Section("absent", "Absent", lambda ctx: None)
    monkeypatch.setattr(report_html, "SECTIONS", [report_html.SECTIONS[0], extra, absent])
    page = build_report(run).read_text()
    # Drawn from the context, escaped heading, in the nav and in list order after the summary.
    assert "<section id=\"extra\"><h2>Extra &lt;b&gt;</h2><p id='x'>run 2 classes</p>" in page
    assert '<a href="#summary">Run summary</a><a href="#extra">Extra &lt;b&gt;</a></div>' in page
    assert page.index('id="summary"') < page.index('id="extra"')
    assert 'id="absent"' not in page and "#absent" not in page
    assert 'id="metrics"' not in page  # the page is the list: nothing else is drawn


def test_imbalance_flag_threshold() -> None:
    assert imbalance([50, 48, 52], ["a", "b", "c"]) is None
    flag = imbalance([200, 10], ["cat", "dog"])
    assert flag["ratio"] == 20 and flag["largest"] == "cat" and flag["smallest"] == "dog"
    assert imbalance([5, 0], ["a", "b"])["ratio"] == float("inf")


def test_new_sections_render_sort_and_link_in_chromium(cnn_run: Path) -> None:
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    with chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("requestfailed", lambda r: errors.append(f"request {r.url}"))
        page.goto((cnn_run / "report.html").resolve().as_uri(), wait_until="load")
        roc_imgs = page.eval_on_selector_all(
            "#roc img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
        thr_rows = page.eval_on_selector_all("#thresholds tbody tr", "els => els.length")
        best = page.eval_on_selector_all("#thresholds tr[data-best]",
                                         "els => els.map(e => e.dataset.best)")
        page.locator("#roc").screenshot(path=str(artifacts / "report-roc.png"))
        page.locator("#thresholds").screenshot(path=str(artifacts / "report-thresholds.png"))
        # Sorting: the threshold table by recall, descending after two clicks.
        head = page.locator("#thresholds thead th", has_text="recall")
        head.click()
        head.click()
        recalls = page.eval_on_selector_all(
            "#thresholds tbody tr", "els => els.map(e => parseFloat(e.cells[2].textContent))")
        sort_state = head.get_attribute("aria-sort")
        links = page.eval_on_selector_all("a[data-file]", "els => els.map(e => e.href)")
    assert errors == []
    assert roc_imgs and all(ok and w > 400 and h > 200 for ok, w, h in roc_imgs), roc_imgs
    assert thr_rows >= 19 and " ".join(best).split() and "f1" in " ".join(best)
    assert sort_state == "descending" and recalls == sorted(recalls, reverse=True)
    assert len(links) >= 3
    for href in links:  # every link opens a file of the run folder
        assert href.startswith("file://") and Path(href[len("file://"):]).is_file(), href
    for name in ("report-roc.png", "report-thresholds.png"):
        assert (artifacts / name).stat().st_size > 5_000


def test_many_classes_small_images_one_vs_rest_and_no_gradcam(tmp_path: Path) -> None:
    run = cnnlab.train(None, model="cnn", epochs=1, out=str(tmp_path / "run"), report=False,
                       verbose=False, device="cpu", model_args={"width": 8})
    page = build_report(run.run_dir).read_text()
    assert "one-vs-rest" in _section(page, "roc") and "<img" in _section(page, "roc")
    assert "binary tasks; this one has 10 classes" in _section(page, "thresholds")
    cam = _section(page, "gradcam")  # digits are 8 x 8: a heat map would be a pixel or two
    assert "<img" not in cam and "at least 16 px" in cam and "8 x 8" in cam
    assert "test macro F1" in _section(page, "summary")


def test_gallery_captions_never_overlap_their_neighbours() -> None:
    from cnnlab.report.gallery import fit_captions
    from cnnlab.report.plots import plt

    fig = plt.figure(figsize=(6, 2))
    ax = fig.add_axes((0, 0, 1, 1))
    from cnnlab.report.gallery import short

    wrong = f"true {short('honey-bee-worker', 9)} 0.43\npred {short('carpenter-ant', 9)} 0.57"
    texts = [ax.text(0.1, 0.5, wrong, fontsize=8.5), ax.text(0.5, 0.5, "ants 0.97", fontsize=8.5)]
    fit_captions(fig, texts, 1.05)
    renderer = fig.canvas.get_renderer()
    widths = [t.get_window_extent(renderer).width / fig.dpi for t in texts]
    plt.close(fig)
    assert widths[0] <= 1.05 and texts[0].get_fontsize() < 8.5  # shrunk to fit
    assert texts[1].get_fontsize() == 8.5  # short captions keep their size
