"""The report in proportion to the run (issue 23, item 3): it reuses the scoring pass's
probabilities, runs Grad-CAM on the images it shows only, probes robustness on a stratified
sample whose size the page states, and the run records its phase times."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_corner_folder

import cnnlab
from cnnlab.evaluate.predictor import Predictor
from cnnlab.evaluate.robustness import default_perturbations, stratified_items
from cnnlab.report import explain_figures
from cnnlab.report.html import build_report
from cnnlab.report.model_sections import robust_sample_size
from cnnlab.run import load_splits, saved_settings


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """A small finished run (skewed classes 3:1 in every split), trained without a report."""
    root = tmp_path_factory.mktemp("proportion")
    data = write_corner_folder(root / "data", (150, 50), size=24, square=6)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(root / "cache"))
        res = cnnlab.train(data=data, model="cnn", epochs=1, image_size=24, channels=1,
                           model_args={"width": 4}, batch_size=32, out=str(root / "run"),
                           verbose=False, device="cpu", test_split=0.4, report=False)
        splits = load_splits(saved_settings(res.run_dir), verbose=False)
    return res.run_dir, splits


def _used(page: str) -> dict[str, int]:
    return {k: int(n) for k, n in re.findall(
        r'class="muted used" data-section="([a-z]+)" data-images="(\d+)"', page)}


def test_report_reuses_probabilities_and_scores_only_its_samples(
        run: tuple[Path, object], monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, splits = run
    predictor = Predictor.load(run_dir / "best.pt")
    test = splits.test
    probs = {"test": predictor.probabilities(test.images).numpy()}
    scored: list[int] = []  # images per forward pass through the predictor
    cams: list[int] = []  # images Grad-CAM was computed for
    real_logits, real_cam = Predictor.logits, explain_figures.gradcam

    def count_logits(self: Predictor, images: torch.Tensor, batch_size: int = 256
                     ) -> torch.Tensor:
        scored.append(int(images.shape[0]))
        return real_logits(self, images, batch_size)

    def count_cam(model: object, images: torch.Tensor, *a: object, **k: object) -> object:
        cams.append(int(images.shape[0]))
        return real_cam(model, images, *a, **k)

    monkeypatch.setattr(Predictor, "logits", count_logits)
    monkeypatch.setattr(explain_figures, "gradcam", count_cam)
    build_report(run_dir, splits=splits, predictor=predictor, probs=probs, n_cam=6,
                 n_gallery=10)
    page = (run_dir / "report.html").read_text()
    n_test = len(test)
    k = robust_sample_size(sum(len(s) for _, s in splits.items()), n_test)
    assert k < n_test  # a sample, not the split
    used = _used(page)
    for key in ("roc", "calibration", "thresholds", "failures"):
        assert used[key] == n_test, key
    assert used["gradcam"] == 6 and cams == [6]  # only the images shown
    assert used["robustness"] == k
    assert f"a stratified sample of {k} of the {n_test}" in page
    # No pass over the whole split: the robustness sample once per perturbation and the 8
    # pictured images in each of the 4 perturbed pictured versions, nothing else (the clean
    # rows of the table and the picture read the run's probabilities).
    assert sum(scored) == k * (len(default_perturbations()) - 1) + 8 * 4
    assert n_test not in scored


def test_report_without_probabilities_scores_the_split_once(
        run: tuple[Path, object], monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir, splits = run
    predictor = Predictor.load(run_dir / "best.pt")
    scored: list[int] = []
    real_logits = Predictor.logits

    def count_logits(self: Predictor, images: torch.Tensor, batch_size: int = 256
                     ) -> torch.Tensor:
        scored.append(int(images.shape[0]))
        return real_logits(self, images, batch_size)

    monkeypatch.setattr(Predictor, "logits", count_logits)
    build_report(run_dir, splits=splits, predictor=predictor, max_robust=20)
    assert scored.count(len(splits.test)) == 1  # shared by ROC, calibration, gallery, ...
    assert _used((run_dir / "report.html").read_text())["robustness"] == 20


def test_stratified_sample_keeps_each_class_share() -> None:
    labels = np.array([0] * 300 + [1] * 90 + [2] * 10)
    idx = stratified_items(labels, 40, seed=3)
    assert len(idx) == 40 and len(set(idx)) == 40 and list(idx) == sorted(idx)
    assert np.bincount(labels[idx]).tolist() == [30, 9, 1]
    rare = np.array([0] * 99 + [1])
    assert np.bincount(rare[stratified_items(rare, 10)]).tolist() == [9, 1]
    assert len(stratified_items(labels, 1000)) == 400


def test_sample_size_follows_the_run() -> None:
    assert robust_sample_size(400, 153) == 32
    assert robust_sample_size(2000, 765) == 40
    assert robust_sample_size(8000, 2000) == 100
    assert robust_sample_size(400, 20) == 20


def test_run_records_and_prints_its_phase_times(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    data = write_corner_folder(tmp_path / "data", (40, 40), size=16, square=4)
    res = cnnlab.train(data=data, model="cnn", epochs=1, image_size=16, channels=1,
                       model_args={"width": 4}, out=str(tmp_path / "run"), device="cpu")
    phases = json.loads((res.run_dir / "metrics.json").read_text())["phases"]
    assert set(phases) == {"load", "features", "train", "finish", "report", "other", "total"}
    assert phases["report"] > 0 and phases["total"] >= sum(
        v for k, v in phases.items() if k != "total") - 0.05
    out = capsys.readouterr().err  # the console prints on stderr
    assert re.search(r"phases: load [\d.]+ s, train [\d.]+ s, scoring\+plots [\d.]+ s, "
                     r"report [\d.]+ s.*; total [\d.]+ s \(report \d+%\)", out), out

    # a resumed run: its phases are this command's, the earlier sessions' training seconds
    # stay in metrics.json's loop_seconds (made large here, so counting them shows)
    import torch

    last = res.run_dir / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["train_state"]["elapsed"] += 1000.0
    torch.save(ckpt, last)
    again = cnnlab.train(data=data, model="cnn", epochs=2, image_size=16, channels=1,
                         model_args={"width": 4}, out=str(tmp_path / "run"), device="cpu",
                         resume=True, report=False, verbose=False)
    metrics = json.loads((again.run_dir / "metrics.json").read_text())
    phases = metrics["phases"]
    assert phases["train"] < 100 and phases["total"] >= sum(
        v for k, v in phases.items() if k != "total") - 0.05
    assert metrics["loop_seconds"] > 1000
