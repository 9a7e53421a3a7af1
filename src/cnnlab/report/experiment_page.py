"""experiment.html: one self-contained page per experiment (sweep, cv, seeds, compare, transfer,
search): what was run, the members' curves overlaid, and the summary table with a link to each
member's report and run folder.

Like report.html it embeds its figures and needs nothing online; the links to members are
relative, so the experiment folder can be moved or zipped as a whole.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from cnnlab.htmlkit import esc, figure, kv_rows, num, page, stamp
from cnnlab.io import atomic_write_bytes, safe_href
from cnnlab.urls import mask_text

PAGE = "experiment.html"
# Summary entries that are tables of their own (shown as rows) or too long for the facts list.
SKIPPED = {"rows", "aggregates", "differences", "runs"}


def _fact(value: object) -> str:
    """A summary entry as one line of text."""
    if isinstance(value, Mapping):
        if "member" in value:  # {"member": name, "settings": ..., "run_dir": ...}
            return str(value["member"])
        return "; ".join(f"{k}: {_fact(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(num(v) if isinstance(v, float) else str(v) for v in value)
    return num(value)


def _fact_line(key: str, value: object) -> str:
    """A summary entry as one line, seconds with one decimal."""
    if key.endswith("seconds") and isinstance(value, (int, float)) and \
            not isinstance(value, bool):
        return _num(value, key)
    return _fact(value)


def _num(v: float, column: str = "") -> str:
    """Seconds with one decimal; learning rates like 1e-05 keep their digits; other numbers as
    in report.html."""
    if column.endswith("seconds") and isinstance(v, (int, float)) and math.isfinite(v):
        return num(float(v), 1)
    return num(v, small=True)


def _href(target: Path, folder: Path) -> str | None:
    """A relative link from the page to `target` (None where no safe relative link exists:
    another drive on Windows)."""
    try:
        rel = os.path.relpath(target.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows): pages link no file: URLs
        return None
    href = safe_href(Path(rel))
    return href + "/" if href is not None and target.is_dir() else href


def _links(run: Path | None, folder: Path) -> str:
    if run is None:
        return "<td></td>"
    links = []
    if (run / "report.html").is_file():
        links.append(("report", _href(run / "report.html", folder)))
    if run.is_dir():
        links.append(("folder", _href(run, folder)))
    parts = [f'<a href="{esc(href)}">{text}</a>' for text, href in links if href is not None]
    return f"<td>{' &middot; '.join(parts) or esc(run.name)}</td>"


def _table(rows: Sequence[Mapping], runs: Sequence[Path | None], folder: Path) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns and k != "best"]
    has_best = any(row.get("best") is True for row in rows)
    head = "".join(f"<th>{esc(c.replace('_', ' '))}</th>" for c in columns) + "<th>links</th>"
    body = []
    for i, row in enumerate(rows):
        cells = []
        for c in columns:
            v = row.get(c)
            number = isinstance(v, (int, float)) and not isinstance(v, bool)
            cells.append(f'<td class="num" data-value="{esc(v)}">{esc(_num(v, c))}</td>' if number
                         else f"<td>{esc(num(v) if v is not None else '')}</td>")
        run = runs[i] if i < len(runs) else None
        best = ' class="best"' if has_best and row.get("best") is True else ""
        body.append(f"<tr{best}>{''.join(cells)}{_links(run, folder)}</tr>")
    caption = '<p class="muted">Click a column head to sort.' + \
        (" The highlighted row is the selected best member." if has_best else "")
    bare = [r for r in runs if r is not None and r.is_dir() and not (r / "report.html").is_file()]
    if bare:  # members write reports only when asked (--report): say how to get one
        many = len(bare) > 1
        caption += (f" {len(bare)} member{'s' * many} without a report.html link "
                    f"{'their' if many else 'its'} folder; <code>cnnlab report FOLDER</code> "
                    "writes one, or run the experiment with <code>--report</code>.")
    caption += "</p>"
    return (f'{caption}<table class="grid sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def build_experiment_page(folder: str | Path, title: str, rows: Sequence[Mapping],
                          runs: Sequence[Path | str | None] = (),
                          summary: Mapping | None = None,
                          curves: str | Path | None = "curves.png",
                          table_file: str = "summary.csv") -> Path:
    """Write <folder>/experiment.html and return its path.

    `runs[i]` is the run folder of `rows[i]` (rows past the end, such as mean/std rows, have
    none); `curves` is the overlaid-curves figure, relative to the folder.
    """
    from cnnlab.version import __version__

    folder = Path(folder)
    run_paths = [Path(r) if r is not None else None for r in runs]
    # Masked: a setup fact may be a storage URL (search), and the page is meant to be shared.
    facts = [(k, mask_text(_fact_line(k, v))) for k, v in (summary or {}).items()
             if k not in SKIPPED and v not in (None, "", [], {})]
    sections = []
    if facts:
        kv = kv_rows([(k.replace("_", " "), v) for k, v in facts])
        sections.append(("setup", "Setup", f'<table class="kv">{kv}</table>'))
    png = folder / curves if curves else None
    if png is not None and png.is_file():
        sections.append(("curves", "Curves", figure(
            png, "learning curves of every member", "Validation loss and accuracy per epoch of "
            "every member: the selected best one bold in red, the next ones in colour, the rest "
            "thin grey; "
            "dashed: training curves, where a member has no validation split; dotted and faded: "
            "pruned or failed trials. Values far outside the other curves' range are left off "
            "the chart, and the axis label says how many.")))
    sections.append(("members", f"Members ({sum(r is not None for r in run_paths)})",
                     _table(rows, run_paths, folder)))
    kind = (summary or {}).get("kind", "experiment")
    html = page(f"{title} \u2013 cnnlab", title,
                f"cnnlab {esc(kind)} &middot; {esc(folder.name)} &middot; {esc(stamp())}",
                sections, f"Generated by cnnlab {esc(__version__)}; the table is "
                          f"{esc(table_file)} of this folder.")
    path = folder / PAGE
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
