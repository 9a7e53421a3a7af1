"""Rich display in Jupyter: short reprs and HTML cards of a run or a loaded model.

Only reads what a run folder already holds (metrics.json, plots/*.png): displaying a result
in a notebook never runs the model or draws a figure again.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from cnnlab.io import safe_href

SPLITS = ("train", "val", "test")
COLUMNS = (("n", "n"), ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
           ("f1", "F1"), ("auroc", "AUROC"), ("loss", "loss"))
MAX_PNG = 1_500_000  # bytes: a larger plot is linked, not embedded, to keep notebooks small


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _num(v: object) -> str:
    if v is None:
        return "\u2013"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def final_split(metrics: dict) -> str | None:
    """The split the run is judged on: test, else val, else train."""
    return next((s for s in ("test", "val", "train") if isinstance(metrics.get(s), dict)), None)


def short_summary(metrics: dict) -> str:
    """'test accuracy 0.9123' (or '' when the run has no metrics)."""
    s = final_split(metrics)
    acc = metrics[s].get("accuracy") if s else None
    return f"{s} accuracy {acc:.4f}" if isinstance(acc, float) else ""


def read_metrics(run_dir: Path) -> dict:
    """metrics.json of a run folder, or {} when missing or unreadable."""
    try:
        return json.loads((Path(run_dir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def _link(path: Path, text: object) -> str:
    """A link to a file (just the text where the path makes no safe link)."""
    href = safe_href(path)
    return _esc(text) if href is None else f'<a href="{_esc(href)}">{_esc(text)}</a>'


def png_tag(path: Path, alt: str, width: int) -> str:
    """An <img> with the PNG inline as base64 (or '' when the file is absent or too big)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return ""
    if len(raw) > MAX_PNG:
        return f"<p>{_link(Path(path), alt)} (large; not embedded)</p>"
    b64 = base64.b64encode(raw).decode("ascii")
    return (f'<img src="data:image/png;base64,{b64}" alt="{_esc(alt)}" '
            f'style="max-width:{width}px;width:100%;height:auto">')


def metrics_table(metrics: dict) -> str:
    """HTML table: one row per split with accuracy, balanced accuracy, F1, AUROC, loss."""
    rows = [s for s in SPLITS if isinstance(metrics.get(s), dict)]
    if not rows:
        return "<p><i>no metrics (metrics.json missing: the run did not finish)</i></p>"
    head = "".join(f"<th>{_esc(label)}</th>" for _, label in COLUMNS)
    body = "".join(f"<tr><th>{_esc(s)}</th>"
                   + "".join(f'<td style="text-align:right">{_num(metrics[s].get(k))}</td>'
                             for k, _ in COLUMNS) + "</tr>" for s in rows)
    avg = metrics[rows[-1]].get("average")
    note = f"<caption style='caption-side:bottom;font-size:11px'>F1: {_esc(avg)}</caption>" \
        if avg else ""
    return f"<table>{note}<thead><tr><th>split</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def run_html(run_dir: Path, metrics: dict, title: str, facts: list[tuple[str, str]]) -> str:
    """A run as a notebook card: facts, metrics table, learning curves and confusion matrix."""
    run_dir = Path(run_dir)
    kv = "".join(f"<tr><th style='text-align:left'>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
                 for k, v in facts)
    plots = run_dir / "plots"
    figs = png_tag(plots / "curves.png", "learning curves", 720) + \
        png_tag(plots / "confusion_matrix.png", "confusion matrix", 420)
    report = run_dir / "report.html"
    link = f"<p>Full report: {_link(report, report)}</p>" if report.is_file() else ""
    return (f"<div class='cnnlab'><b>{_esc(title)}</b><table>{kv}</table>"
            f"{metrics_table(metrics)}<div>{figs}</div>{link}</div>")


def model_html(title: str, facts: list[tuple[str, str]], run_dir: Path | None) -> str:
    """A loaded model as a card; with its run's metrics and plots when run_dir holds a run."""
    metrics = read_metrics(run_dir) if run_dir is not None else {}
    if metrics:
        return run_html(run_dir, metrics, title, facts)
    kv = "".join(f"<tr><th style='text-align:left'>{_esc(k)}</th><td>{_esc(v)}</td></tr>"
                 for k, v in facts)
    return f"<div class='cnnlab'><b>{_esc(title)}</b><table>{kv}</table></div>"
