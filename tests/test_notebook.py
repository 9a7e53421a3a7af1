"""Notebook display: reprs, _repr_html_ with inline plots, show_batch, dir(cnnlab)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

import cnnlab

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    root = tmp_path_factory.mktemp("nb")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CNNLAB_CACHE", str(root / "cache"))
        return cnnlab.train(None, model="mlp", epochs=2, out=str(root / "run"), report=False,
                            verbose=False, device="cpu")


def _pngs(page: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_run_result_repr_and_html(digits_run) -> None:  # noqa: ANN001
    text = repr(digits_run)
    acc = digits_run.metrics["test"]["accuracy"]
    assert text.startswith("RunResult(") and f"test accuracy {acc:.4f}" in text
    assert "\n" not in text and len(text) < 200
    page = digits_run._repr_html_()
    pngs = _pngs(page)
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG") for p in pngs)  # curves + confusion
    assert 'alt="learning curves"' in page and 'alt="confusion matrix"' in page
    assert f"<th>test</th><td style=\"text-align:right\">{digits_run.metrics['test']['n']}" in page
    assert f"{acc:.4f}" in page and "F1: macro" in page


def test_predictor_repr_and_html(digits_run, tmp_path: Path) -> None:  # noqa: ANN001
    model = digits_run.model
    text = repr(model)
    assert text.startswith("Predictor(model='mlp', 10 classes [0, 1, 2, 3, 4, ...]")
    assert "input 1x8x8" in text
    page = model._repr_html_()
    assert "parameters" in page and len(_pngs(page)) == 2  # its run's plots come along
    # A checkpoint on its own: just the facts, no metrics or plots.
    lone = tmp_path / "model.pt"
    lone.write_bytes((digits_run.run_dir / "best.pt").read_bytes())
    page = cnnlab.load(lone)._repr_html_()
    assert "input" in page and "<img" not in page and "no metrics" not in page


def test_show_batch_of_data_and_of_a_run(digits_run) -> None:  # noqa: ANN001
    fig = cnnlab.show_batch(cnnlab.data(None), n=12)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 12
    assert {ax.get_title() for ax in shown} <= {str(i) for i in range(10)}
    assert fig._repr_png_().startswith(b"\x89PNG")
    fig = cnnlab.show_batch(digits_run, n=8)
    titles = [ax.get_title() for ax in fig.axes if ax.images]
    assert len(titles) == 8 and all(t.startswith("true ") and "\npred " in t for t in titles)
    assert "test split" in fig._suptitle.get_text()
    colors = {ax.title.get_color() for ax in fig.axes if ax.images}
    assert colors <= {"#1a7f37", "#cf222e"}
    with pytest.raises(TypeError, match="show_batch takes"):
        cnnlab.show_batch(42)


def test_lazy_names_are_listed() -> None:
    names = dir(cnnlab)
    assert "ImageClassifier" in names and "show_batch" in names and "train" in names
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cnnlab.nope  # noqa: B018
