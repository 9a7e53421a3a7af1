"""Rich display in Jupyter: short reprs and HTML cards of a run or a loaded model.

Only reads what a run folder already holds (metrics.json, plots/*.png): displaying a result
in a notebook never runs the model or draws a figure again.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnlab.htmlkit import bytes_uri, esc, kv_rows, link, num

SPLITS = ("train", "val", "test")
COLUMNS = (("n", "n"), ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
           ("f1", "F1"), ("auroc", "AUROC"), ("loss", "loss"))
MAX_PNG = 1_500_000  # bytes: a larger plot is linked, not embedded, to keep notebooks small
TH = " style='text-align:left'"  # Jupyter's CSS right-aligns cells; fact names read left


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


def png_tag(path: Path, alt: str, width: int) -> str:
    """An <img> with the PNG inline as base64 (or '' when the file is absent or too big)."""
    try:
        raw = Path(path).read_bytes()
    except OSError:
        return ""
    if len(raw) > MAX_PNG:
        return f"<p>{link(Path(path), alt)} (large; not embedded)</p>"
    return (f'<img src="{bytes_uri(raw)}" alt="{esc(alt)}" '
            f'style="max-width:{width}px;width:100%;height:auto">')


def metrics_table(metrics: dict) -> str:
    """HTML table: one row per split with accuracy, balanced accuracy, F1, AUROC, loss."""
    rows = [s for s in SPLITS if isinstance(metrics.get(s), dict)]
    if not rows:
        return "<p><i>no metrics (metrics.json missing: the run did not finish)</i></p>"
    head = "".join(f"<th>{esc(label)}</th>" for _, label in COLUMNS)
    body = "".join(f"<tr><th>{esc(s)}</th>"
                   + "".join(f'<td style="text-align:right">{num(metrics[s].get(k))}</td>'
                             for k, _ in COLUMNS) + "</tr>" for s in rows)
    avg = metrics[rows[-1]].get("average")
    note = f"<caption style='caption-side:bottom;font-size:11px'>F1: {esc(avg)}</caption>" \
        if avg else ""
    return f"<table>{note}<thead><tr><th>split</th>{head}</tr></thead><tbody>{body}</tbody></table>"


def run_html(run_dir: Path, metrics: dict, title: str, facts: list[tuple[str, str]]) -> str:
    """A run as a notebook card: facts, metrics table, learning curves and confusion matrix."""
    run_dir = Path(run_dir)
    kv = kv_rows(facts, TH)
    plots = run_dir / "plots"
    figs = png_tag(plots / "curves.png", "learning curves", 720) + \
        png_tag(plots / "confusion_matrix.png", "confusion matrix", 420)
    report = run_dir / "report.html"
    full = f"<p>Full report: {link(report, report)}</p>" if report.is_file() else ""
    return (f"<div class='cnnlab'><b>{esc(title)}</b><table>{kv}</table>"
            f"{metrics_table(metrics)}<div>{figs}</div>{full}</div>")


def model_html(title: str, facts: list[tuple[str, str]], run_dir: Path | None) -> str:
    """A loaded model as a card; with its run's metrics and plots when run_dir holds a run."""
    metrics = read_metrics(run_dir) if run_dir is not None else {}
    if metrics:
        return run_html(run_dir, metrics, title, facts)
    kv = kv_rows(facts, TH)
    return f"<div class='cnnlab'><b>{esc(title)}</b><table>{kv}</table></div>"
