"""The HTML kit every cnnlab page is made with: report.html, experiment.html, doctor.html and
the notebook cards.

One escaping function, one number formatter, embedded images, the shared CSS, the inline
table-sorting script and the page shell. Pages are f-strings over these helpers: every text
that comes from a user or the data goes through `esc` (or `link`, for hrefs), and markup is
only ever built here or by the callers' own literals. It sits in the base layer because the
notebook cards (evaluate/) use it as well as the pages (report/, doctor/).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cnnlab.io import safe_href

JPEG_ABOVE = 200_000  # bytes of PNG above which a page embeds a JPEG copy
DASH = "\u2013"  # what a missing number reads as


def esc(x: object) -> str:
    """HTML-escaped text of any value (quotes too, so it is safe in attributes)."""
    return html.escape(str(x), quote=True)


def num(v: object, digits: int = 4, small: bool = False) -> str:
    """Every number on a page: floats with `digits` decimals (with `small`, tiny ones such as a
    learning rate of 1e-05 in 3 significant digits), None as an en dash, booleans as yes/no."""
    if v is None:
        return DASH
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if small and v != 0 and abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.{digits}f}"
    return str(v)


def link(target: str | Path, text: object, attrs: str = "") -> str:
    """A link through io.safe_href; just the (escaped) text where no safe href exists."""
    href = safe_href(target)
    if href is None:
        return esc(text)
    return f'<a href="{esc(href)}"{attrs}>{esc(text)}</a>'


def bytes_uri(raw: bytes, mime: str = "image/png") -> str:
    """Bytes as a base64 data URI, so the page needs no other file."""
    return f"data:{mime};base64," + base64.b64encode(raw).decode("ascii")


def data_uri(png: Path) -> str:
    """A PNG file as a data URI; above JPEG_ABOVE bytes a JPEG copy when that is smaller.

    Galleries of photos make PNGs of a megabyte; the JPEG keeps a page a few hundred KB (the
    PNG itself stays where it is).
    """
    raw = Path(png).read_bytes()
    if len(raw) > JPEG_ABOVE:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("RGB").save(buf, "JPEG", quality=88,
                                                        optimize=True)
        if buf.tell() < len(raw):
            return bytes_uri(buf.getvalue(), "image/jpeg")
    return bytes_uri(raw)


def figure(png: Path, alt: str, caption: str = "", width: int | None = None) -> str:
    """An embedded figure with alt text, an optional caption and an optional max width (px)."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    style = f' style="max-width:{width}px"' if width else ""
    return f'<figure{style}><img src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def note(text: str, kind: str = "info") -> str:
    """A boxed remark (info, warn or skip)."""
    return f'<p class="note {kind}">{esc(text)}</p>'


def kv_rows(rows: Sequence[tuple[object, object]], th: str = "") -> str:
    """Table rows of (name, value) pairs, both escaped; `th` adds attributes to the heads."""
    return "".join(f"<tr><th{th}>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)


def card(label: str, value: str, sub: str = "", attrs: str = "", value_attrs: str = "") -> str:
    """A summary card; `value` is HTML (callers escape or format it), label and sub are text."""
    return (f'<div class="card"{attrs}><div class="label">{esc(label)}</div>'
            f'<div class="value"{value_attrs}>{value}</div><div class="sub">{esc(sub)}</div>'
            "</div>")


@dataclass(frozen=True)
class Section:
    """One section of a page: its anchor, its heading and how to draw it from the page's
    context (HTML, or None to leave the section off the page)."""

    key: str
    title: str
    render: Callable[..., str | None]


def stamp() -> str:
    """Local date and time as the pages show when they were written."""
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def page(title: str, heading: str, meta: str, sections: Sequence[tuple[str, str, str]],
         footer: str, top: str = "", css: str = "", script: bool = True) -> str:
    """A whole self-contained page: header, a nav of the sections, the sections, a footer.

    `title` and `heading` are text; `meta`, `footer`, `top` and the section bodies are HTML.
    `sections` holds (key, title, body) triples; `script` adds the table-sorting script.
    """
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{esc(t)}</h2>{b}</section>' for k, t, b in sections)
    js = f"<script>{SORT_JS}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}{css}</style></head><body>"
        f'<header><div class="wrap"><h1>{esc(heading)}</h1><div class="meta">{meta}</div>'
        f'</div></header><nav><div class="wrap">{nav}</div></nav>'
        f'<main class="wrap">{top}{body}</main><footer class="wrap">{footer}</footer>'
        f"{js}</body></html>\n")


CSS = """
:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);background:#fff}
header{background:linear-gradient(135deg,#0b3d91,#0969da);color:#fff;padding:22px 0 18px}
.wrap{max-width:1120px;margin:0 auto;padding:0 24px}
header h1{margin:0;font-size:22px;font-weight:600}
header .meta{opacity:.85;font-size:13px;margin-top:4px}
nav{border-bottom:1px solid var(--line);background:var(--soft);position:sticky;top:0}
nav a{display:inline-block;padding:8px 10px;color:var(--accent);text-decoration:none;font-size:13px}
nav a:hover{text-decoration:underline}
section{padding:14px 0 8px;border-bottom:1px solid var(--line)}
h2{font-size:18px;margin:10px 0 10px;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:6px 0 14px}
.card{flex:1 1 150px;border:1px solid var(--line);border-radius:8px;padding:10px 14px;
background:var(--soft)}
.card .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.03em}
.card .value{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}
.card .sub{font-size:12px;color:var(--muted)}
table{border-collapse:collapse;margin:6px 0 12px;font-variant-numeric:tabular-nums}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
table.grid thead th{background:var(--soft);font-weight:600;border-bottom:2px solid var(--line)}
table.grid tbody tr:nth-child(even){background:#fbfcfd}
table.kv th{font-weight:500;color:var(--muted);white-space:nowrap}
table.config code{font-size:12px}
td.num{text-align:right}
.cols{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
td.neg{color:var(--bad)}
td.bar{min-width:160px;position:relative}
td.bar span{display:inline-block;height:10px;background:#54aeff;border-radius:2px;
vertical-align:middle}
td.bar em{font-style:normal;color:var(--muted);font-size:12px;margin-left:6px}
figure{margin:8px 0 14px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px}
figcaption{font-size:12px;color:var(--muted);margin-top:4px}
details{margin:6px 0 10px}
summary{cursor:pointer;color:var(--accent);font-weight:500}
.note{border-left:4px solid var(--accent);background:#ddf4ff;padding:8px 12px;border-radius:4px}
.note.warn{border-color:var(--warn);background:#fff8c5}
.note.skip{border-color:#8c959f;background:var(--soft);color:var(--muted)}
.muted{color:var(--muted);font-size:13px}
.findings{flex:1 1 340px;border:1px solid var(--line);border-radius:8px;padding:4px 16px 6px;
background:#fbfcfd}
.findings h3{font-size:14px;margin:8px 0 4px}
.findings ul{margin:0 0 6px;padding-left:18px}
.findings li{margin:5px 0}
footer{color:var(--muted);font-size:12px;padding:16px 0 28px}
code{background:var(--soft);padding:1px 4px;border-radius:4px}
table.sortable thead th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable thead th:after{content:" \\2195";color:#8c959f;font-size:11px}
table.sortable thead th[aria-sort=ascending]:after{content:" \\25B2";color:var(--accent)}
table.sortable thead th[aria-sort=descending]:after{content:" \\25BC";color:var(--accent)}
tr.best td{background:#dafbe1;font-weight:600}
"""

# Click (or Enter on) a column head to sort the rows; numbers sort as numbers. Inline and
# dependency-free: the page must keep working offline and from a single file.
SORT_JS = """(function(){function key(r,c){var e=r.cells[c];if(!e)return"";
var v=e.getAttribute("data-value"),s=(v!==null&&v!=="")?v:e.textContent.trim(),
n=parseFloat(s.replace(/[,%+]/g,""));return isNaN(n)?s.toLowerCase():n}
document.querySelectorAll("table.sortable").forEach(function(t){
var hs=t.tHead?t.tHead.rows[0].cells:[];Array.prototype.forEach.call(hs,function(th,c){
th.tabIndex=0;th.title="sort by this column";function go(){var b=t.tBodies[0];if(!b)return;
var asc=th.getAttribute("aria-sort")!=="ascending";Array.prototype.forEach.call(hs,
function(o){o.removeAttribute("aria-sort")});th.setAttribute("aria-sort",asc?"ascending":
"descending");var rs=Array.prototype.slice.call(b.rows);rs.sort(function(x,y){
var a=key(x,c),d=key(y,c),r=typeof a===typeof d?(a<d?-1:a>d?1:0):(typeof a==="number"?-1:1);
return asc?r:-r});rs.forEach(function(r){b.appendChild(r)})}
th.addEventListener("click",go);th.addEventListener("keydown",function(e){
if(e.key==="Enter"||e.key===" "){e.preventDefault();go()}})})})})();"""
