"""doctor.html: one self-contained page (thumbnails embedded as data URIs, no scripts)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.doctor.pool import Pool
from cnnlab.htmlkit import Section, bytes_uri, card, esc, kv_rows, note, num, page, stamp

THUMB = 72  # px: every thumbnail is shown at most this big
EXTRA_CSS = """
.thumb{width:72px;height:72px;object-fit:contain;image-rendering:pixelated;background:#000;
border:1px solid var(--line);border-radius:4px;vertical-align:middle}
.tile{display:inline-block;margin:4px 6px 4px 0;text-align:center;font-size:11px;
color:var(--muted);max-width:90px;overflow-wrap:anywhere;vertical-align:top}
.tile b{color:var(--fg,#24292f);font-weight:600}
.groups{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start;margin:8px 0}
.group{border:1px solid var(--line);border-radius:8px;padding:6px 10px;background:#fbfcfd}
.group.leak{border-color:#cf222e55}
.tag{display:inline-block;font-size:11px;padding:1px 6px;border-radius:10px;background:var(--soft);
margin-right:4px}
.tag.bad{background:#ffebe9;color:#cf222e}
.tag.warn{background:#fff8c5;color:#7d4e00}
.issue .tile{width:110px;max-width:110px}
td.zero{background:#ffebe9;color:#cf222e;font-weight:600}
"""


@dataclass(frozen=True)
class PageContext:
    """What the page's sections draw from: doctor.json's content, the images, the item limit."""

    report: dict
    pool: Pool
    limit: int


def thumb_uri(image: np.ndarray) -> str:
    """uint8 [C,H,W] as a small PNG data URI (small images scaled up, big ones down)."""
    a = np.asarray(image)
    a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    img = Image.fromarray(np.ascontiguousarray(a))
    h, w = a.shape[:2]
    scale = THUMB / max(h, w)
    if scale < 1:
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=True)
    return bytes_uri(buf.getvalue())


def tile(pool: Pool, i: int, caption: str = "", cls: str = "") -> str:
    """A thumbnail with the item's id (and path as tooltip) and a caption."""
    d = pool.describe(i)
    tip = d["path"] or d["id"]
    cap = f"<br>{caption}" if caption else ""
    return (f'<span class="tile {cls}" data-item="{esc(d["id"])}"><img class="thumb" '
            f'src="{thumb_uri(pool.image(i))}" alt="{esc(d["id"])}" title="{esc(tip)}"><br>'
            f'{esc(_short(d["id"]))}{cap}</span>')


def _short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else "\u2026" + text[-(width - 1):]


def _label(pool: Pool, k: int) -> str:
    return pool.classes[k] if 0 <= k < len(pool.classes) else "unlabeled"


NOT_CHECKED = "not checked"


def _count(n: int | None) -> int | str:
    return NOT_CHECKED if n is None else n


def _label_card(s: dict) -> tuple[str, object, str]:
    lab = s["labels"]
    if lab["status"] == "unreliable":
        try_ = f"; try {lab['suggest']}" if lab.get("suggest") else ""
        return ("label check", "unreliable", f"accuracy {num(lab['accuracy'], 2)}, needs "
                                             f"{num(lab['needed_accuracy'], 2)}{try_}")
    if lab["status"] == "not checked":
        return ("likely label errors", NOT_CHECKED, lab.get("reason") or "")
    return ("likely label errors", s["label_issues"], "ranked below")


def _cards(report: dict) -> str:
    s = report["summary"]
    dup_sub = "" if s["duplicate_items"] is None else f"{s['duplicate_items']} images"
    cards = [("leaked held-out images", _count(s["leaks"]), "val/test images also in train"),
             ("duplicate groups", _count(s["duplicate_groups"]), dup_sub),
             _label_card(s),
             ("outliers", _count(s["outliers"]), "blank or far from every class"),
             ("unusual files", _count(s["unusual_files"]), "pixel size, aspect ratio, mode")]
    auc = (report["shift"].get("train_vs_test") or {}).get("auroc")
    cards.append(("train-vs-test shift", num(auc, 3), "AUROC, 0.5 = none"))
    return '<div class="cards">' + "".join(
        card(label, esc(value), sub, f' data-card="{esc(label)}"') for label, value, sub in cards
    ) + "</div>"


def _summary(ctx: PageContext) -> str:
    report = ctx.report
    d = report["data"]
    rows = [("data", d["source"]), ("format", d["format"]),
            ("images", ", ".join(f"{k} {v}" for k, v in d["sizes"].items())),
            ("decoded as", d["shape"]), ("classes", len(d["classes"])),
            ("splits", d.get("split_note") or "from the source"),
            ("features", _features_row(report["settings"]))]
    table = kv_rows(rows)
    found = "".join(f"<li>{esc(f)}</li>" for f in report["summary"]["findings"]) or \
        "<li>No problems found.</li>"
    return (_cards(report) + f'<div class="cols"><table class="kv">{table}</table>'
            f'<div class="findings"><h3>Findings</h3><ul>{found}</ul></div></div>')


def _features_row(settings: dict) -> str:
    side = f" at {settings['backbone_side']} px" if settings.get("backbone_side") else ""
    asked = settings.get("features_asked")
    chosen = f" (asked: {asked})" if asked and asked != settings["features"] else ""
    note_ = f"; {settings['features_note']}" if settings.get("features_note") else ""
    return f"{settings['features']}{side}{chosen}{note_}"


def _skipped(section: dict) -> str:
    """The note of a check that did not run: it found nothing because it looked at nothing."""
    return note(f"Not checked ({section.get('skipped') or 'left out'}): nothing here says the "
                "data is clean.", "skip")


def _leaks(ctx: PageContext) -> str:
    report, pool, limit = ctx.report, ctx.pool, ctx.limit
    if not report["leaks"]["checked"]:
        return _skipped(report["leaks"])
    leaks = report["leaks"]["items"]
    eff = report["leaks"].get("effect")
    out = []
    if eff and "skipped" not in eff:
        rows = "".join(
            f"<tr><th>{esc(n)}</th><td class='num'>{e['n']}</td><td class='num'>"
            f"{num(e['accuracy'])}</td><td class='num'>{e['n_leaked']}</td><td class='num'>"
            f"{num(e['accuracy_leaked'])}</td><td class='num' data-effect='{esc(n)}'>"
            f"{num(e['accuracy_without_leaks'])}</td></tr>"
            for n, e in eff.items() if isinstance(e, dict))
        out.append('<table class="grid"><thead><tr><th>split</th><th>n</th><th>accuracy</th>'
                   "<th>leaked</th><th>accuracy on leaked</th><th>accuracy without leaks</th>"
                   f"</tr></thead><tbody>{rows}</tbody></table>")
    elif eff:
        out.append(note(eff["skipped"], "skip"))
    if not leaks:
        return "".join(out) + note("No val/test image has a copy in train.")
    n = len(leaks)
    out.append(f'<p class="muted">{n} held-out image{"s have" if n > 1 else " has"} a copy (or '
               "near copy) in train: a model can score them by memory. Shown: the held-out "
               "image, then its training copies.</p>")
    boxes = []
    for leak in leaks[:limit]:
        tags = (f'<span class="tag bad">{esc(leak["split"])}</span>'
                f'<span class="tag">{"exact" if leak["exact"] else "near"}</span>'
                + ("" if leak["labels_agree"] else
                   '<span class="tag warn">labels differ</span>'))
        tiles = tile(pool, leak["index"], f"<b>{esc(leak['split'])}</b> {esc(leak['label'])}")
        tiles += "".join(tile(pool, t, f"train {esc(_label(pool, int(pool.labels[t])))}")
                         for t in leak["train_indices"][:8])
        boxes.append(f'<div class="group leak" data-leak="{esc(leak["id"])}">{tags}<br>{tiles}'
                     "</div>")
    out.append(f'<div class="groups">{"".join(boxes)}</div>')
    if len(leaks) > limit:
        out.append(note(f"{len(leaks) - limit} more in doctor.json", "skip"))
    return "".join(out)


def _duplicates(ctx: PageContext) -> str:
    report, pool, limit = ctx.report, ctx.pool, ctx.limit
    if not report["duplicates"]["checked"]:
        return _skipped(report["duplicates"])
    groups = report["duplicates"]["groups"]
    if not groups:
        return note("No duplicate images.")
    out = [f'<p class="muted">{len(groups)} group{"s" if len(groups) > 1 else ""} of identical '
           "or near-identical images "
           f"(pHash distance \u2264 {report['settings']['distance']} and thumbnail correlation "
           f"\u2265 {report['settings']['min_similarity']}).</p>"]
    boxes = []
    for g in groups[:limit]:
        tags = f'<span class="tag">{esc(g["kind"])}</span>'
        if g["cross_split"]:
            tags += f'<span class="tag bad">across {esc(" + ".join(g["splits"]))}</span>'
        if g["labels_disagree"]:
            tags += '<span class="tag warn">labels differ</span>'
        tiles = "".join(tile(pool, m, f"{esc(pool.split_names[m])} "
                                      f"{esc(_label(pool, int(pool.labels[m])))}")
                        for m in g["members"][:12])
        more = f" \u2026 and {g['size'] - 12} more" if g["size"] > 12 else ""
        boxes.append(f'<div class="group" data-group="{g["size"]}">{tags}<br>{tiles}{more}'
                     "</div>")
    out.append(f'<div class="groups">{"".join(boxes)}</div>')
    if len(groups) > limit:
        out.append(note(f"{len(groups) - limit} more groups in doctor.json", "skip"))
    return "".join(out)


def _labels(ctx: PageContext) -> str:
    report, pool, limit = ctx.report, ctx.pool, ctx.limit
    sec = report["label_issues"]
    if not sec["checked"]:
        return _skipped(sec)
    items, s = sec["items"], sec["summary"]
    model = (f'<p class="muted">{s.get("checked", 0)} labeled images checked with a '
             f"{esc(s.get('model', ''))} on {esc(_features_row(report['settings']))} features: "
             f"out-of-sample accuracy {num(s.get('out_of_sample_accuracy'), 3)}, against "
             f"{num(s.get('majority_rate'), 3)} for always guessing the largest class.")
    if sec["status"] == "unreliable":
        try_ = f" Try {sec['suggest']}." if sec.get("suggest") else ""
        return (model + "</p>" + note(f"Unreliable: {sec['reason']}. No label is called wrong "
                                      f"and none is listed.{try_}", "warn"))
    head = (model + f" Confident learning (cleanlab) flags {len(items)}, worst first. Nothing "
            "is relabelled: review them.</p>")
    if not items:
        return head + note("No likely label errors.")
    tiles = "".join(
        f'<span class="issue" data-issue="{esc(r["id"])}">'
        + tile(pool, r["index"], f"#{k + 1} {esc(r['split'])}<br>given <b>{esc(r['given'])}"
                                 f"</b> ({num(r['p_given'], 2)})<br>suggested "
                                 f"<b>{esc(r['suggested'])}</b> ({num(r['p_suggested'], 2)})")
        + "</span>" for k, r in enumerate(items[:limit]))
    more = note(f"{len(items) - limit} more in doctor.json", "skip") if len(items) > limit else ""
    return (head + '<p class="muted">Each image: its rank, split, the given label and the '
            "suggested one, with the out-of-sample probability of each.</p>"
            f"<div>{tiles}</div>" + more)


def _outliers(ctx: PageContext) -> str:
    report, pool, limit = ctx.report, ctx.pool, ctx.limit
    if not report["outliers"]["checked"]:
        return _skipped(report["outliers"])
    items = report["outliers"]["items"]
    if not items:
        return note("No nearly blank image and none far from every class.")
    by_kind: dict[str, list[dict]] = {}
    for r in items:
        by_kind.setdefault(r["kind"], []).append(r)
    names = {"blank": "Nearly blank or constant", "far": "Far from every class (in feature space)"}
    out = []
    for kind, rows in by_kind.items():
        tiles = "".join(tile(pool, r["index"], esc(r["why"])) for r in rows[:limit])
        out.append(f'<h3>{esc(names.get(kind, kind))} ({len(rows)})</h3>'
                   f'<div data-outliers="{esc(kind)}">{tiles}</div>')
    return "".join(out)


def _files(ctx: PageContext) -> str:
    report, pool, limit = ctx.report, ctx.pool, ctx.limit
    sec = report["unusual_files"]
    if not sec["checked"]:
        return _skipped(sec)
    head, h = "", sec.get("headers") or {}
    if h.get("files"):
        head = (f'<p class="muted">{h["files"]} file headers read: typical size '
                f"{h['median_size'][0]}x{h['median_size'][1]}, modes "
                f"{esc(', '.join(f'{k} {v}' for k, v in h['modes'].items()))}. Facts about "
                "the files, not about what they show: every image is resized to the same size "
                "on load.</p>")
    if not sec["items"]:
        return head + note("No file of unusual pixel size, aspect ratio or mode.")
    tiles = "".join(tile(pool, r["index"], esc(r["why"])) for r in sec["items"][:limit])
    more = note(f"{sec['n'] - limit} more in doctor.json", "skip") if sec["n"] > limit else ""
    return head + f'<div data-files="unusual">{tiles}</div>' + more


def _balance(ctx: PageContext) -> str:
    b = ctx.report["balance"]
    if b.get("checked") is False:
        return _skipped(b)
    names = list(b["counts"])
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    body = "".join(
        f"<tr><th>{esc(c)}</th>" + "".join(
            f'<td class="num{" zero" if b["counts"][n][k] == 0 else ""}" '
            f'data-count="{esc(n)}.{esc(c)}">{b["counts"][n][k]}</td>' for n in names) + "</tr>"
        for k, c in enumerate(b["classes"]))
    out = [f'<table class="grid"><thead><tr><th>class</th>{head}</tr></thead><tbody>{body}'
           "</tbody></table>"]
    for split, missing in b["missing"].items():
        out.append(note(f"{split} has no images of: {', '.join(missing)}", "warn"))
    if b.get("imbalance"):
        f = b["imbalance"]
        out.append(note(f"Imbalanced training classes: {f['largest']} ({f['largest_n']}) vs "
                        f"{f['smallest']} ({f['smallest_n']}).", "warn"))
    return "".join(out)


def _shift(ctx: PageContext) -> str:
    s = ctx.report["shift"]
    rows = [(k[len("train_vs_"):], v) for k, v in s.items() if k.startswith("train_vs_")]
    if not rows:
        return note(s.get("skipped") or "needs a train split and a val or test split", "skip")
    body = "".join(f'<tr><th>train vs {esc(n)}</th><td class="num" data-shift="{esc(n)}">'
                   f'{num(v["auroc"], 3)}</td><td>{esc(v["verdict"])}</td></tr>'
                   for n, v in rows)
    return (f'<p class="muted">{esc(s["method"])}.</p><table class="grid"><thead><tr><th>'
            f"</th><th>AUROC</th><th>verdict</th></tr></thead><tbody>{body}</tbody></table>")


def _fix(ctx: PageContext) -> str:
    f = ctx.report.get("fix")
    if not f:
        return note("Run with --fix to write a cleaned index.", "skip")
    rows = [("written", f["path"]), ("kept", f["kept"]), ("removed", f["removed"]),
            ("flagged for review", f["flagged_for_review"]), ("removed rows", f["removed_list"]),
            ("train on it", f["train_command"])]
    return '<table class="kv">' + "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(v)}</code>"
                                          "</td></tr>" for k, v in rows) + "</table>"


SECTIONS = [
    Section("summary", "Summary", _summary),
    Section("leaks", "Leaks between splits", _leaks),
    Section("duplicates", "Duplicates", _duplicates),
    Section("labels", "Label check", _labels),
    Section("outliers", "Outliers", _outliers),
    Section("files", "Unusual files", _files),
    Section("balance", "Class balance per split", _balance),
    Section("shift", "Train vs test shift", _shift),
    Section("fix", "Cleaned index", _fix),
]


def build_page(report: dict, pool: Pool, out: Path, limit: int = 50) -> Path:
    """Write doctor.html next to doctor.json."""
    from cnnlab.io import atomic_write_bytes
    from cnnlab.version import __version__

    ctx = PageContext(report, pool, limit)
    sections = [(s.key, s.title, body) for s in SECTIONS
                if (body := s.render(ctx)) is not None]
    name = report["data"]["source"]
    html = page(f"{name} \u2013 cnnlab doctor", f"Data health: {name}",
                f"cnnlab doctor &middot; {esc(stamp())}", sections,
                f"Generated by cnnlab {esc(__version__)} in {report['seconds']:.1f} s. "
                "Machine-readable: doctor.json.", css=EXTRA_CSS, script=False)
    path = out / "doctor.html"
    atomic_write_bytes(path, html.encode("utf-8"))
    return path
