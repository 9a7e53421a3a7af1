"""A search of 50 trials on one page: the best trial alone in its reserved colour, pruned ones
dotted and faded, y-limits no single spike can set, the legend beside the axes, seconds with
one decimal, and headless Chromium showing the best trial's colour only where there is one.

The pages are built from synthetic trial folders (metrics.csv per trial), as
write_search_page reads them after a real search, so no model is trained."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, chromium_page
from matplotlib.colors import to_hex, to_rgb

from cnnlab import io
from cnnlab.report.plots import plt

ARTIFACTS = ROOT / "test-artifacts"
COLS = ["trial", "state", "val_acc", "lr", "epochs_run", "best_epoch", "train_seconds",
        "seconds", "pruned_at_epoch", "best", "error", "host", "run_dir"]


def _history(base: float, epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 2.3 * math.exp(-e / 4) + base,
             "val_loss": 2.3 * math.exp(-e / 4) + base,
             "val_acc": 1 - base / 2 - 0.4 * math.exp(-e / 3)} for e in range(1, epochs + 1)]


def _trials(n: int = 50, seed: int = 0) -> list[tuple[str, str, list[dict]]]:
    """(name, state, history) per trial: every third pruned after 3 epochs, one failed, one
    pruned trial's loss spiking to 26; the best (lowest base) completes."""
    rng = random.Random(seed)
    out = []
    for t in range(n):
        state = "pruned" if t % 3 == 1 else "fail" if t == 8 else "complete"
        hist = _history(rng.uniform(0.2, 1.0), 3 if state == "pruned" else 10)
        if t == 4:
            hist[1]["val_loss"] = 26.0
        out.append((f"trial {t}", state, hist))
    return out


def _ranked(trials: list[tuple[str, str, list[dict]]]) -> list[str]:
    """Best first, then pruned and failed (as the leaderboard orders them)."""
    order = {"complete": 0, "pruned": 1, "fail": 2}
    return [n for n, s, h in sorted(trials, key=lambda t: (order[t[1]], -t[2][-1]["val_acc"]))]


def _figure(trials: list[tuple[str, str, list[dict]]], best: bool = True) -> plt.Figure:
    from cnnlab.report.plots import overlay_figure

    ranked = _ranked(trials)
    fig = overlay_figure({n: h for n, _, h in trials}, "search", ranked[0] if best else None,
                         ranked=ranked, states={n: s for n, s, _ in trials})
    fig.canvas.draw()
    return fig


def _member_lines(fig: plt.Figure) -> list:
    return [ln for ax in fig.axes for ln in ax.get_lines()]


def test_the_best_trial_alone_wears_the_reserved_colour_and_the_top_ones_differ() -> None:
    from cnnlab.report.plots import BEST_COLOR, OTHER_COLOR

    trials = _trials()
    fig = _figure(trials)
    try:
        lines = _member_lines(fig)
        assert len(lines) == 2 * 50  # loss and accuracy of every trial
        best = [ln for ln in lines if to_hex(ln.get_color()) == BEST_COLOR]
        assert [ln.get_label() for ln in best] == [f"{_ranked(trials)[0]} (best)"] * 2
        assert min(ln.get_linewidth() for ln in best) > max(
            ln.get_linewidth() for ln in lines if ln not in best)
        # every other coloured trial has a colour x line style of its own, the rest are grey
        coloured = {(ln.get_label(), to_hex(ln.get_color()), ln.get_linestyle())
                    for ln in lines if ln not in best and to_hex(ln.get_color()) != OTHER_COLOR}
        styles = [(c, s) for _, c, s in coloured]
        assert 5 <= len(coloured) <= 12 and len(set(styles)) == len(styles)
        assert sum(to_hex(ln.get_color()) == OTHER_COLOR for ln in lines) >= 2 * 30
        # without a best trial nobody is drawn in its colour
        plt.close(fig)
        fig = _figure(trials, best=False)
        assert not [ln for ln in _member_lines(fig) if to_hex(ln.get_color()) == BEST_COLOR]
    finally:
        plt.close(fig)


def test_pruned_and_failed_trials_are_dotted_and_faded() -> None:
    trials = _trials(6)  # few: every trial has a colour and a legend entry of its own
    fig = _figure(trials)
    try:
        by_label = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
        best = _ranked(trials)[0]
        assert set(by_label) == {f"{n} (best)" if n == best else f"{n} (pruned)"
                                 if s == "pruned" else n for n, s, _ in trials}
        assert sum("(pruned)" in label for label in by_label) == 2
        for label, ln in by_label.items():
            faded = "(pruned)" in label
            assert (ln.get_linestyle() == ":") is faded, label
            assert (ln.get_alpha() < 0.6) is faded, label
        # at 50 trials too: exactly the pruned and failed ones are dotted
        plt.close(fig)
        fig = _figure(_trials())
        dotted = sum(ln.get_linestyle() == ":" for ln in fig.axes[0].get_lines())
        assert dotted == sum(s != "complete" for _, s, _ in _trials())
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert legend[0].endswith("(best)") and legend[-1].endswith("other pruned or failed")
    finally:
        plt.close(fig)


def test_one_spike_does_not_set_the_y_limits_and_the_axis_says_it_is_off_the_chart() -> None:
    trials = _trials()
    # a completed trial that diverged spikes too: not only pruned curves are left out
    trials[9] = (trials[9][0], "complete", [{**r, "val_loss": 40.0} if r["epoch"] == 5
                                            else r for r in trials[9][2]])
    fig = _figure(trials)
    try:
        loss = fig.axes[0]
        lo, hi = loss.get_ylim()
        every = [r["val_loss"] for _, _, h in trials for r in h]
        good = [v for v in every if v < 20]
        # the good curves fill most of the axis (on a 0 .. 40 axis they would be flat lines)
        assert lo > 0 and (max(good) - min(good)) / (hi - lo) > 0.5, (lo, hi)
        best = dict((n, h) for n, _, h in trials)[_ranked(trials)[0]]
        assert all(lo < r["val_loss"] < hi for r in best)
        assert sum(v > hi for v in every) == 2
        assert "2 values above the chart, up to 40" in loss.get_xlabel()
        assert "chart" not in fig.axes[1].get_xlabel()  # accuracy: nothing cut off
    finally:
        plt.close(fig)


def test_the_legend_sits_beside_the_axes_not_on_a_curve() -> None:
    fig = _figure(_trials())
    try:
        assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1
        box = fig.legends[0].get_window_extent()
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent())
        assert box.x0 >= max(ax.get_window_extent().x1 for ax in fig.axes)
        texts = [t.get_text() for t in fig.legends[0].get_texts()]
        assert len(texts) <= 14  # the best, the coloured ones, and a line for the rest
    finally:
        plt.close(fig)


def _search_folder(folder: Path, best: bool = True) -> tuple[list[dict], dict]:
    """A search folder of 50 synthetic trials; returns write_search_page's rows and meta."""
    trials = _trials()
    ranked = _ranked(trials)
    rows = []
    for name, state, hist in trials:
        run = folder / "trials" / name.split()[1]
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.yaml").write_text("model: mlp\n")
        io.write_csv(run / "metrics.csv", hist)
        rows.append({"trial": int(name.split()[1]), "state": state,
                     "val_acc": hist[-1]["val_acc"] if state == "complete" else None,
                     "lr": 1e-3, "epochs_run": len(hist), "best_epoch": len(hist),
                     "train_seconds": 12.345678, "seconds": 13.456789,
                     "pruned_at_epoch": len(hist) if state == "pruned" else None,
                     "best": best and name == ranked[0], "error": None, "host": "h",
                     "run_dir": str(run.resolve())})
    rows.sort(key=lambda r: ranked.index(f"trial {r['trial']}"))
    meta = {"study": "s50", "direction": "maximize", "metric": "val_acc",
            "space": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
            "pruner": "median", "storage": "sqlite:///study.db",
            "counts": {"complete": 32, "pruned": 17, "fail": 1},
            "best": {"trial": rows[0]["trial"], "value": rows[0]["val_acc"]} if best else None}
    return rows, meta


def test_the_search_page_draws_its_pruned_trials_dotted_and_its_best_in_red(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.experiments.search import write_search_page
    from cnnlab.report import plots
    from cnnlab.report.plots import BEST_COLOR

    drawn = []
    save = plots.save_figure

    def keep(fig: plt.Figure, path: Path, *a: object, **kw: object) -> Path:
        drawn.append([(ln.get_label(), to_hex(ln.get_color()), ln.get_linestyle())
                      for ln in fig.axes[0].get_lines()])
        return save(fig, path, *a, **kw)

    monkeypatch.setattr(plots, "save_figure", keep)
    rows, meta = _search_folder(tmp_path)
    page = write_search_page(tmp_path, rows, COLS, meta).read_text()
    (lines,) = drawn
    assert [c for _, c, _ in lines].count(BEST_COLOR) == 1
    assert (f"trial {rows[0]['trial']} (best)", BEST_COLOR, "-") in lines
    assert sum(s == ":" for _, _, s in lines) == 18  # 17 pruned, 1 failed
    # seconds with one decimal (the sort key keeps them whole)
    assert ">12.3<" in page and ">13.5<" in page and "12.3457" not in page
    assert 'data-value="12.345678"' in page


def test_seconds_show_one_decimal_in_the_table_and_the_facts(tmp_path: Path) -> None:
    from cnnlab.report.experiment_page import build_experiment_page

    rows = [{"member": "a", "train_seconds": 3.14159, "seconds": 61, "val_loss": 0.123456}]
    page = build_experiment_page(tmp_path, "t", rows, [], {"kind": "seeds", "seconds": 7.25},
                                 curves=None).read_text()
    assert ">3.1<" in page and ">61.0<" in page and ">7.2<" in page
    assert "3.1416" not in page and "7.2500" not in page
    assert ">0.1235<" in page  # other numbers keep their four decimals


def test_members_link_their_report_and_the_page_says_how_the_others_get_one(
        tmp_path: Path) -> None:
    from cnnlab.report.experiment_page import build_experiment_page

    runs = [tmp_path / "members" / n for n in ("a", "b", "c")]
    for r in runs:
        r.mkdir(parents=True)
    (runs[0] / "report.html").write_text("<html></html>")
    rows = [{"member": r.name} for r in runs]
    page = build_experiment_page(tmp_path, "t", rows, runs, curves=None).read_text()
    assert 'href="members/a/report.html"' in page and 'href="members/b/"' in page
    assert "members/b/report.html" not in page
    assert "2 members without a report.html link their folder" in page
    assert "<code>cnnlab report FOLDER</code>" in page
    for r in runs[1:]:
        (r / "report.html").write_text("<html></html>")
    page = build_experiment_page(tmp_path, "t", rows, runs, curves=None).read_text()
    assert page.count("report</a>") == 3 and "without a report.html" not in page


def test_the_cli_leaderboard_title_names_the_study_once(capsys: pytest.CaptureFixture) -> None:
    from cnnlab.experiments.search import print_leaderboard

    rows = [{"trial": 0, "state": "complete", "val_acc": 0.9, "lr": 0.01, "epochs_run": 2,
             "seconds": 1.23, "best": True}]
    print_leaderboard(rows, "val_acc", ["lr"], {"study": "search", "direction": "maximize",
                                                "counts": {"complete": 1}})
    text = capsys.readouterr().out
    assert "Search 'search': maximize val_acc" in text and "search search" not in text


def _red_pixels(png: Path) -> int:
    """Pixels within a small distance of BEST_COLOR."""
    from PIL import Image

    from cnnlab.report.plots import BEST_COLOR

    px = np.asarray(Image.open(png).convert("RGB"), dtype=float)
    target = np.array(to_rgb(BEST_COLOR)) * 255
    return int((np.abs(px - target).max(axis=2) < 30).sum())


@pytest.mark.slow  # renders two 50-trial figures and starts Chromium
def test_chromium_shows_the_best_trial_in_its_colour_and_no_other_trial_in_it(
        tmp_path: Path) -> None:
    from cnnlab.experiments.search import write_search_page

    pages = {}
    for best in (True, False):
        folder = tmp_path / ("best" if best else "none")
        rows, meta = _search_folder(folder, best)
        pages[best] = write_search_page(folder, rows, COLS, meta)
    ARTIFACTS.mkdir(exist_ok=True)
    shots, seen = {}, {}
    with chromium_page(width=1500) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for best, html in pages.items():
            page.goto(html.resolve().as_uri(), wait_until="load")
            seen[best] = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])")
            shots[best] = ARTIFACTS / f"experiment-search50-{'best' if best else 'none'}.png"
            page.locator("#curves img").screenshot(path=str(shots[best]))
            seen[best].append(page.eval_on_selector_all("#members tbody tr", "els => els.length"))
    assert errors == []
    for best in (True, False):
        (ok, w, h), rows = seen[best]
        assert ok and w > 1000 and h > 300 and rows == 50, seen[best]
    # the best trial's red is on screen, and with no best trial there is none at all: the
    # colour is the best's alone (matplotlib's own cycle reuses red for trial 3, 13, ...)
    assert _red_pixels(shots[True]) > 300
    assert _red_pixels(shots[False]) == 0
