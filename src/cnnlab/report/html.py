"""report.html: one self-contained page per run (images embedded, readable offline).

Nothing is fetched: the one script is inline (it sorts tables on a click).

build_report() is the one place in report/ that runs a model: it reloads the run's best
checkpoint and data when the caller (train/run.py finalize) does not hand them over, and asks
evaluate/ for the failure gallery, Grad-CAM and robustness sections. Those imports are local to
the function so the figure helpers of this package stay free of evaluate/.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import json
import time
from collections.abc import Callable
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.io import atomic_write_bytes, read_yaml
from cnnlab.settings import check_saved

JPEG_ABOVE = 200_000  # bytes of PNG above which the page embeds a JPEG copy
IMBALANCE_RATIO = 3.0  # largest / smallest training class at or above this: flagged
SPLIT_ORDER = ("train", "val", "test")
METRIC_COLUMNS = (("n", "n"), ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
                  ("loss", "loss"), ("precision", "precision"), ("recall", "recall"),
                  ("f1", "F1"), ("auroc", "AUROC"))
RUN_FILES = ("best.pt", "predictions.csv", "metrics.json", "metrics.csv", "config.yaml")
MIN_CAM_SIZE = 16  # px: below this the last conv map is a pixel or two, a heat map says nothing
# Robustness probes on a stratified sample: 1 in ROBUST_PER images, ROBUST_MIN..ROBUST_MAX. Each
# sampled image is scored once per perturbation (8 times), so the probes cost about a sixth of
# the run's own feature pass over all its images: the report stays in proportion to the run
# (1,980 photos: 1 in 40 made the report 26% of the run on the loaded 2-core machine).
ROBUST_PER, ROBUST_MIN, ROBUST_MAX = 50, 32, 100
CLASS_COLUMNS = (("support", "support"), ("accuracy", "accuracy"), ("precision", "precision"),
                 ("recall", "recall"), ("f1", "F1"))


# ---- small formatting helpers -----------------------------------------------------------------
def esc(x: object) -> str:
    """HTML-escaped text of any value."""
    return html.escape(str(x), quote=True)


def fmt(v: object, digits: int = 4) -> str:
    """Numbers as shown in the report: floats with `digits` decimals, None as an en dash."""
    if v is None:
        return "\u2013"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def metric_cell(path: str, v: object, digits: int = 4) -> str:
    """A table cell carrying its metrics.json path and exact value for machines (and tests)."""
    raw = "" if v is None else json.dumps(v)
    return (f'<td class="num" data-metric="{esc(path)}" data-value="{esc(raw)}">'
            f"{fmt(v, digits)}</td>")


def data_uri(png: Path) -> str:
    """A PNG file as a base64 data URI, so the page needs no other file.

    Galleries of photos make PNGs of a megabyte; above JPEG_ABOVE bytes the page embeds a
    JPEG copy (the PNG stays in plots/), which keeps report.html a few hundred KB.
    """
    raw = Path(png).read_bytes()
    if len(raw) > JPEG_ABOVE:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.open(io.BytesIO(raw)).convert("RGB").save(buf, "JPEG", quality=88,
                                                        optimize=True)
        if buf.tell() < len(raw):
            return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def figure(png: Path, alt: str, caption: str = "", width: int | None = None) -> str:
    """An embedded figure with alt text, an optional caption and an optional max width (px)."""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    style = f' style="max-width:{width}px"' if width else ""
    return f'<figure{style}><img src="{data_uri(png)}" alt="{esc(alt)}">{cap}</figure>'


def used(key: str, n: int, text: str) -> str:
    """The line saying how many images a section used (data-images carries the count)."""
    return (f'<p class="muted used" data-section="{esc(key)}" data-images="{int(n)}">'
            f"<b>Images used:</b> {text}</p>")


def robust_sample_size(n_images: int, n_labeled: int) -> int:
    """How many labeled images the report's robustness probes score: 1 in ROBUST_PER of the
    run's `n_images` (every split), within ROBUST_MIN..ROBUST_MAX, at most all labeled ones."""
    return min(n_labeled, max(ROBUST_MIN, min(ROBUST_MAX, n_images // ROBUST_PER)))


def fast_predictor(predictor: object, precision: str | None, n_images: int = 0) -> object:
    """The predictor for the report's many forward passes (robustness): on a CPU with
    onnxruntime, the network exported to ONNX (float32; the fastest engine measured here,
    models/feature_engine.py) when `n_images` pays the export; else bf16 with a channels_last
    copy of the network where the run trained in bf16; else the predictor itself."""
    import copy

    import torch

    from cnnlab.models.feature_engine import use_ort

    device = torch.device(str(getattr(predictor, "device", "cpu")))
    if use_ort(device, n_images):
        from cnnlab.models.feature_engine import OrtModule

        try:
            side, ch = predictor.image_size, predictor.channels
            module = OrtModule(predictor.module, torch.zeros(1, ch, side, side))
        except Exception:  # noqa: BLE001 - a network ONNX cannot export: the torch path
            module = None
        if module is not None:
            fast = copy.copy(predictor)
            fast.module, fast.precision, fast.engine = module, "32", "onnxruntime"
            return fast
    if precision != "bf16" or getattr(predictor, "precision", "32") == "bf16":
        return predictor
    fast = copy.copy(predictor)
    fast.module = copy.deepcopy(predictor.module).to(memory_format=torch.channels_last)
    fast.precision = "bf16"
    fast.channels_last = True
    return fast


def engine_text(predictor: object) -> str:
    """'float32, ONNX Runtime' / 'bfloat16' / 'float32': how the robustness passes ran."""
    name = {"bf16": "bfloat16", "32": "float32"}.get(getattr(predictor, "precision", "32"),
                                                     str(getattr(predictor, "precision", "")))
    return name + (", ONNX Runtime" if getattr(predictor, "engine", "") == "onnxruntime" else "")


def note(text: str, kind: str = "info") -> str:
    """A boxed remark (info, warn or skip)."""
    return f'<p class="note {kind}">{esc(text)}</p>'


# ---- data ---------------------------------------------------------------------------------------
def imbalance(counts: list[int], classes: list[str]) -> dict | None:
    """A flag dict when the class counts are skewed (largest/smallest >= IMBALANCE_RATIO)."""
    if len(counts) < 2 or sum(counts) == 0:
        return None
    hi = max(range(len(counts)), key=lambda i: counts[i])
    lo = min(range(len(counts)), key=lambda i: counts[i])
    ratio = counts[hi] / counts[lo] if counts[lo] else float("inf")
    if ratio < IMBALANCE_RATIO:
        return None
    return {"ratio": ratio, "largest": classes[hi], "smallest": classes[lo],
            "largest_n": counts[hi], "smallest_n": counts[lo]}


def _read_history(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            row: dict = {}
            for k, v in r.items():
                try:
                    row[k] = None if v in ("", None) else float(v)
                except ValueError:
                    row[k] = v
            if row.get("epoch") is not None:
                row["epoch"] = int(row["epoch"])
            rows.append(row)
    return rows


def _train_time(metrics: dict) -> str:
    """Training seconds, with the frozen-backbone feature pass shown apart when there was one."""
    t = metrics.get("train_seconds")
    if not isinstance(t, (int, float)):
        return "\u2013"
    feat = metrics.get("feature_seconds") or 0.0
    return f"{t:.1f} s" + (f" (of which {feat:.1f} s computing backbone features once)"
                           if feat else "")


def _reload(run_dir: Path, cfg: dict, splits: object, predictor: object,
            notes: list[str], code: tuple[str | None, bool] = (None, False)
            ) -> tuple[object, object]:
    """The run's best model and data, reloaded from best.pt and config.yaml when not given."""
    from cnnlab.evaluate.predictor import Predictor

    if predictor is None:
        ckpt = run_dir / "best.pt"
        if not ckpt.is_file():
            notes.append(f"{ckpt.name} not found: sections that need the model are skipped")
            return splits, None
        try:
            predictor = Predictor.load(ckpt, model=code[0], trust_code=code[1])
        except CnnlabError as exc:
            notes.append(f"could not load the model: {exc}")
            return splits, None
    if splits is None:
        from cnnlab.data.load import load_data

        try:
            opts = predictor.load_options()  # the run's own data settings
            splits = load_data(cfg.get("data"), opts)
        except CnnlabError as exc:
            notes.append(f"could not reload the run's data ({exc}); image sections are skipped")
            return None, predictor
        if list(splits.classes) != list(predictor.classes):
            notes.append("the reloaded data's classes differ from the model's (was the run "
                         "trained on in-memory data?); image sections are skipped")
            return None, predictor
    return splits, predictor


def _eval_split(splits: object) -> tuple[str, object] | tuple[None, None]:
    for name in ("test", "val", "train"):
        s = splits.get(name)
        if s is not None and len(s) and bool((s.labels >= 0).any()):
            return name, s
    return None, None


# ---- sections -----------------------------------------------------------------------------------
def findings(metrics: dict, cfg: dict, counts: dict[str, list[int]],
             classes: list[str]) -> list[str]:
    """Plain-language observations (HTML) read off the metrics: baseline, gap, epochs, classes."""
    final = next((s for s in ("test", "val") if isinstance(metrics.get(s), dict)), None)
    out: list[str] = []
    if final is None:
        return out
    m = metrics[final]
    acc, major = m.get("accuracy"), (metrics.get("baselines") or {}).get("majority")
    if acc is not None and major is not None:
        gain = 100 * (acc - major)
        if gain <= 1:
            out.append(f"<b>No better than guessing the majority class</b>: {final} accuracy "
                       f"{acc:.3f} vs {major:.3f}.")
        else:
            out.append(f"{final.capitalize()} accuracy {acc:.3f} is <b>{gain:.1f} points</b> "
                       f"above always guessing the majority class ({major:.3f}).")
    train_acc = (metrics.get("train") or {}).get("accuracy") \
        if isinstance(metrics.get("train"), dict) else None
    if train_acc is not None and acc is not None and train_acc - acc > 0.1:
        out.append(f"Train accuracy {train_acc:.3f} vs {final} {acc:.3f}: a gap of "
                   f"{100 * (train_acc - acc):.0f} points, a sign of overfitting (try "
                   "<code>--augment</code>, weight decay or fewer epochs).")
    best, ran = metrics.get("best_epoch"), metrics.get("epochs_run")
    if metrics.get("stopped_early"):
        out.append(f"Early stopping after epoch {ran}; the best epoch was {best}.")
    elif best and ran and best == ran and ran > 1:
        out.append(f"The best epoch was the last ({best}): more epochs may still help.")
    pc = m.get("per_class") or {}
    recalls = [(v.get("recall"), c) for c, v in pc.items()
               if v.get("recall") is not None and v.get("support")]
    if len(recalls) >= 2 and min(recalls)[0] < max(recalls)[0] - 0.02:
        r, c = min(recalls)
        out.append(f"Weakest class on {final}: <b>{esc(c)}</b> (recall {r:.3f}).")
    train = counts.get("train")
    if train and imbalance(list(train), classes):
        out.append("Training classes are <b>imbalanced</b> (see Data).")
    return out


def f1_label(average: str | None, sub: str) -> tuple[str, str]:
    """What the F1 card means: the positive class's F1 (binary) or the macro mean."""
    avg = str(average or "")
    if avg.startswith("binary"):
        pos = avg.split("positive class:", 1)[-1].rstrip(")").strip() if ":" in avg else ""
        return (f"F1 of {pos}" if pos else "F1 (positive class)",
                f"{sub}; the positive class only")
    if avg == "macro":
        return "macro F1", f"{sub}; mean of the per-class F1"
    return "F1", sub


def _files_row(run_dir: Path) -> str:
    """Links to the run's files that sit beside report.html (relative: the folder may move)."""
    links = [f'<a href="{esc(n)}" data-file="{esc(n)}">{esc(n)}</a>'
             for n in RUN_FILES if (run_dir / n).is_file()]
    return f"<tr><th>files</th><td>{' &middot; '.join(links)}</td></tr>" if links else ""


def _summary(run_dir: Path, cfg: dict, metrics: dict, predictor: object, data_info: dict,
             counts: dict[str, list[int]], classes: list[str]) -> str:
    final = next((s for s in ("test", "val", "train") if isinstance(metrics.get(s), dict)), None)
    m = metrics.get(final, {}) if final else {}
    base = metrics.get("baselines") or {}
    cards = []

    def card(label: str, value: str, sub: str = "", attrs: str = "") -> None:
        cards.append(f'<div class="card"><div class="label">{esc(label)}</div>'
                     f'<div class="value"{attrs}>{value}</div><div class="sub">{esc(sub)}</div>'
                     "</div>")

    if final:
        for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                           ("auroc", "AUROC"), ("f1", "F1")):
            v = m.get(key)
            sub = f"{final} split, n = {m.get('n', '?')}"
            if key == "f1":
                label, sub = f1_label(m.get("average"), sub)
            card(f"{final} {label}", fmt(v), sub,
                 f' data-metric="{final}.{key}" data-value="{esc(json.dumps(v))}"')
    if base.get("majority") is not None:
        card("majority baseline", fmt(base["majority"]),
             f"random guess {fmt(base.get('random'))}",
             f' data-metric="baselines.majority" data-value="{esc(json.dumps(base["majority"]))}"')
    rows = [("run folder", str(run_dir)), ("model", cfg.get("model")),
            ("data", data_info.get("source") or cfg.get("data") or "built-in digits")]
    if predictor is not None:
        n_params = sum(p.numel() for p in predictor.module.parameters())
        rows.append(("parameters", f"{n_params:,}"))
        rows.append(("input", f"{predictor.channels} x {predictor.image_size} x "
                              f"{predictor.image_size}"))
    used = metrics.get("resolved") or cfg.get("resolved") or {}  # what ran, not what was asked
    lr = used.get("lr", cfg.get("lr"))
    chose = used.get("recipe") if isinstance(used.get("recipe"), dict) else {}
    lr_text = "default" if lr is None else f"{lr:g}" + (
        " (chosen by the recipe's range test)" if cfg.get("lr") is None and "lr" in chose
        else " (the optimizer's default)" if cfg.get("lr") is None else "")
    rows += [("optimizer", f"{cfg.get('optimizer')} (lr {lr_text}, "
                           f"batch {cfg.get('batch_size')}, schedule {cfg.get('schedule')})"),
             ("epochs", f"{metrics.get('epochs_run', '?')} of {cfg.get('epochs')}; best "
                        f"epoch {metrics.get('best_epoch', '?')}"
                        + (" (stopped early)" if metrics.get("stopped_early") else "")),
             ("training time", _train_time(metrics)),
             ("device", f"{used.get('device', cfg.get('device'))}, precision "
                        f"{used.get('precision', cfg.get('precision'))} (asked: "
                        f"{cfg.get('device')}, {cfg.get('precision')}); threads "
                        f"{used.get('num_threads', '?')}")]
    if chose:  # --recipe fast's choices from the data (train/autorecipe.py)
        why = chose.get("why") or {}
        rows.append((f"recipe {cfg.get('recipe')} chose", "; ".join(
            f"{k} {'none' if v is None else v} ({why.get(k, '')})" for k, v in chose.items()
            if k not in ("why", "lr_test"))))
    table = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    table += _files_row(run_dir)
    conf = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(json.dumps(v))}</code></td></tr>"
                   for k, v in cfg.items())
    found = "".join(f"<li>{f}</li>" for f in findings(metrics, cfg, counts, classes))
    side = f'<div class="findings"><h3>Findings</h3><ul>{found}</ul></div>' if found else ""
    return (f'<div class="cards">{"".join(cards)}</div>'
            f'<div class="cols"><table class="kv">{table}</table>{side}</div>'
            f"<details><summary>Full configuration (config.yaml)</summary>"
            f'<table class="kv config">{conf}</table></details>')


def _data_section(classes: list[str], counts: dict[str, list[int]], metrics: dict,
                  data_info: dict) -> str:
    head_notes, cols, flag_html = [], [], ""
    if data_info.get("split_note"):
        head_notes.append(f'<p class="muted">Splits: {esc(data_info["split_note"])}.</p>')
    if counts:
        names = [n for n in SPLIT_ORDER if n in counts]
        train = counts.get("train") or next(iter(counts.values()))
        total, top = max(sum(train), 1), max(max(train), 1)
        head = "".join(f"<th>{esc(n)}</th>" for n in names)
        body = []
        for i, c in enumerate(classes):
            cells = "".join(f'<td class="num" data-count="{esc(n)}.{esc(c)}">{counts[n][i]}</td>'
                            for n in names)
            share = train[i] / total
            # Bars scale to the largest class so skew is visible at a glance.
            body.append(f"<tr><th>{esc(c)}</th>{cells}<td class='bar'><span style='width:"
                        f"{90 * train[i] / top:.1f}px'></span><em>{100 * share:.1f}%</em></td>"
                        "</tr>")
        totals = "".join(f'<td class="num"><b>{sum(counts[n])}</b></td>' for n in names)
        cols.append(f'<table class="sortable grid"><thead><tr><th>class</th>{head}'
                    f'<th>share of train</th></tr></thead><tbody>{"".join(body)}</tbody>'
                    f"<tfoot><tr><th>total</th>{totals}<td></td></tr></tfoot></table>")
        flag = imbalance(list(train), classes)
        if flag:
            ratio = "no items" if flag["ratio"] == float("inf") else f"{flag['ratio']:.1f}x"
            flag_html = (
                f'<p class="note warn" id="imbalance-flag"><b>Imbalanced classes.</b> The '
                f"largest training class ({esc(flag['largest'])}, {flag['largest_n']}) is "
                f"{ratio} the smallest ({esc(flag['smallest'])}, {flag['smallest_n']}). Accuracy "
                "can look good while the small class is missed: read the per-class recall and "
                "the balanced accuracy, and consider <code>--class-weights auto</code> or "
                "<code>--sampler balanced</code>.</p>")
    base = metrics.get("baselines") or {}
    if base.get("random") is not None:
        on = "test" if isinstance(metrics.get("test"), dict) else "val"
        cols.append(
            f'<table class="kv"><tr><th>random guess accuracy</th>'
            f'{metric_cell("baselines.random", base["random"])}</tr>'
            f'<tr><th>majority-class accuracy<br><span class="muted">({esc(on)} split, '
            f'majority class of train)</span></th>'
            f'{metric_cell("baselines.majority", base["majority"])}</tr></table>')
    if not cols:
        return note("no data summary available", "skip")
    return "".join(head_notes) + flag_html + f'<div class="cols">{"".join(cols)}</div>'


def _metrics_section(metrics: dict, classes: list[str]) -> str:
    splits = [s for s in SPLIT_ORDER if isinstance(metrics.get(s), dict)]
    if not splits:
        return note("metrics.json has no split metrics", "skip")
    head = "".join(f"<th>{esc(label)}</th>" for _, label in METRIC_COLUMNS)
    rows = "".join(
        f"<tr><th>{esc(s)}</th>"
        + "".join(metric_cell(f"{s}.{k}", metrics[s].get(k)) for k, _ in METRIC_COLUMNS)
        + "</tr>" for s in splits)
    avg = {metrics[s].get("average") for s in splits} - {None}
    out = [f'<table class="sortable grid metrics"><thead><tr><th>split</th>{head}</tr></thead>'
           f"<tbody>{rows}</tbody></table>"]
    if avg:
        out.append(f'<p class="muted">Precision, recall and F1: {esc(", ".join(sorted(avg)))}.'
                   " AUROC: one-vs-rest macro average for more than two classes.</p>")
    final = splits[-1]
    for s in reversed(splits):
        pc = metrics[s].get("per_class") or {}
        if not pc:
            continue
        chead = "".join(f"<th>{esc(label)}</th>" for _, label in CLASS_COLUMNS)
        body = "".join(
            f"<tr><th>{esc(c)}</th>"
            + "".join(metric_cell(f"{s}.per_class.{c}.{k}", pc[c].get(k)) for k, _ in
                      CLASS_COLUMNS) + "</tr>" for c in classes if c in pc)
        opened = " open" if s == final else ""
        out.append(f"<details{opened}><summary>Per-class metrics: {esc(s)}</summary>"
                   f'<table class="sortable grid"><thead><tr><th>class</th>{chead}</tr></thead>'
                   f"<tbody>{body}</tbody></table></details>")
    return "".join(out)


def _threshold_section(labels: object, probs: object, classes: list[str], split: str,
                       positive_class: str | None) -> str:
    from cnnlab.report.curves import positive_index, threshold_table

    keep = labels >= 0
    pos = positive_index(classes, positive_class)
    y, score = (labels[keep] == pos).astype(int), probs[keep][:, pos]
    rows = threshold_table(y, score)
    best = {k: r for r in rows for k in r.best}
    body = []
    for r in rows:
        tag = " and ".join({"f1": "best F1", "balanced_accuracy": "best balanced acc."}[k]
                           for k in r.best)
        cls = ' class="best"' if r.best else ""
        attrs = f' data-best="{esc(" ".join(r.best))}"' if r.best else ""
        body.append(f"<tr{cls}{attrs}><td class='num' data-value='{r.threshold!r}'>"
                    f"{r.threshold:.4g}</td>"
                    + "".join(f"<td class='num'>{v:.4f}</td>" for v in
                              (r.precision, r.recall, r.f1, r.balanced_accuracy))
                    + f"<td class='num'>{r.predicted_positive}</td><td>{esc(tag)}</td></tr>")
    tips = []
    for key, label in (("f1", "F1"), ("balanced_accuracy", "balanced accuracy")):
        if key in best:
            r = best[key]
            tips.append(f"{label} is highest at <b>p({esc(classes[pos])}) &ge; "
                        f"{r.threshold:.4g}</b> (recall {r.recall:.3f}, precision "
                        f"{r.precision:.3f})")
    default = next((r for r in rows if r.threshold == 0.5), None)
    lead = (f"At the default 0.5 the {esc(classes[pos])} recall is {default.recall:.3f}. "
            if default else "")
    return (f'<p class="muted">Calling an image <b>{esc(classes[pos])}</b> when its probability '
            f"is at least the threshold, on the {int(keep.sum())} labeled {esc(split)} images. "
            f"{lead}{'; '.join(tips)}. Choose the threshold on validation data, then apply it "
            f"to the <code>prob_{esc(classes[pos])}</code> column of predictions.csv.</p>"
            '<table class="sortable grid thresholds"><thead><tr><th>threshold</th>'
            "<th>precision</th><th>recall</th><th>F1</th><th>balanced acc.</th>"
            "<th>predicted positive</th><th>note</th></tr></thead><tbody>" + "".join(body)
            + "</tbody></table>")


def _robust_table(rows: list[dict], split: str, total: int, seed: int = 0) -> str:
    from cnnlab.evaluate.robustness import NOISE_DEFINITION

    body = []
    for r in rows:
        cls = "neg" if r["change"] < -0.05 else ""
        body.append(f"<tr><th>{esc(r['perturbation'])}</th><td>{esc(r['description'])}</td>"
                    f'<td class="num" data-robust="{esc(r["perturbation"])}">'
                    f"{fmt(r['accuracy'])}</td><td class='num {cls}'>{r['change']:+.4f}</td>"
                    f"<td class='num'>{fmt(r['unchanged'])}</td></tr>")
    n = rows[0]["n"]
    which = f"all {n}" if n >= total else f"a stratified, seeded sample of {n} of the {total}"
    return (f'<p class="muted">Accuracy on {which} labeled {esc(split)} images (<code>cnnlab '
            f"explain robustness</code> runs on all). "
            f"{esc(NOISE_DEFINITION.replace('SEED', str(seed)))}; "
            "&ldquo;unchanged&rdquo; = share of predictions equal to those on the clean images."
            '</p><table class="sortable grid"><thead><tr><th>perturbation</th><th>what</th>'
            "<th>accuracy</th><th>change</th><th>unchanged</th></tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


# ---- the page -----------------------------------------------------------------------------------
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


def build_report(run_dir: str | Path, splits: object = None, predictor: object = None,
                 n_gallery: int = 10, n_cam: int = 8, max_robust: int | None = None,
                 seed: int = 0, probs: dict | None = None, model: str | None = None,
                 trust_code: bool = False, precision: str | None = None) -> Path:
    """Write run_dir/report.html (self-contained) and return its path.

    `probs` ({split: probabilities}, as training's final scoring computed them) spares the
    report another pass of the model over its split: ROC, calibration, thresholds and the
    failure gallery read them. Grad-CAM runs on the `n_cam` images it shows only; robustness on
    a stratified sample of `max_robust` images (default: robust_sample_size), in bf16 where
    `precision` (default: the run's resolved precision) is bf16. `model`/`trust_code`: a
    custom model's builder, named by the user (see Predictor.load); built-ins need neither.
    """
    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CnnlabError(f"{run_dir}: not a cnnlab run folder (no config.yaml)")
    cfg = check_saved(read_yaml(cfg_path), cfg_path)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text()) \
            if (run_dir / "metrics.json").is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{run_dir / 'metrics.json'}: unreadable ({exc})") from None
    if not isinstance(metrics, dict):
        raise CnnlabError(f"{run_dir / 'metrics.json'}: not a JSON object")
    history = _read_history(run_dir / "metrics.csv")
    notes: list[str] = []
    if not metrics:
        notes.append("metrics.json is missing: the run did not finish")
    splits, predictor = _reload(run_dir, cfg, splits, predictor, notes, (model, trust_code))
    classes = list(predictor.classes) if predictor is not None else \
        list(next((m["per_class"] for m in metrics.values()
                   if isinstance(m, dict) and "per_class" in m), {}))
    plots = run_dir / "plots"
    data_info: dict = {}
    counts: dict[str, list[int]] = {}
    if splits is not None:
        data_info = {"source": splits.source, "split_note": splits.split_note}
        counts = {n: s.class_counts() for n, s in splits.items() if len(s) and s.labeled}
        unlabeled = [f"{n}: {int((s.labels < 0).sum())} unlabeled images" for n, s in
                     splits.items() if len(s) and (s.labels < 0).any()]
        if unlabeled:
            data_info["split_note"] = "; ".join(filter(None, [splits.split_note, *unlabeled]))
    else:
        for n in SPLIT_ORDER:
            pc = (metrics.get(n) or {}).get("per_class") if isinstance(metrics.get(n), dict) \
                else None
            if pc:
                counts[n] = [pc[c]["support"] for c in classes]

    sections: list[tuple[str, str, str]] = []
    timings: dict[str, float] = {}

    def add(key: str, title: str, make: Callable[[], str]) -> None:
        t = time.perf_counter()
        try:
            body = make()
        except CnnlabError as exc:
            body = note(f"skipped: {exc}", "skip")
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the report
            body = note(f"could not build this section: {type(exc).__name__}: {exc}", "skip")
        timings[key] = time.perf_counter() - t
        sections.append((key, title, body))

    add("summary", "Run summary", lambda: _summary(run_dir, cfg, metrics, predictor, data_info,
                                                   counts, classes))
    add("data", "Data", lambda: _data_section(classes, counts, metrics, data_info))
    add("curves", "Learning curves", lambda: _curves(run_dir, plots, history, cfg))
    add("metrics", "Metrics", lambda: _metrics_section(metrics, classes))
    add("confusion", "Confusion matrix", lambda: _confusion(plots, metrics, classes))

    split_name, eval_set = _eval_split(splits) if splits is not None else (None, None)
    ready = predictor is not None and eval_set is not None
    why = "needs the model and labeled data" + (f" ({notes[-1]})" if notes else "")
    cache: dict = {"probs": probs[split_name]} if probs and split_name in probs else {}
    reused = bool(cache)
    n_labeled = int((eval_set.labels >= 0).sum()) if eval_set is not None else 0
    if precision is None:
        precision = (metrics.get("resolved") or cfg.get("resolved") or {}).get("precision")

    def clean_probs():  # noqa: ANN202 - the eval split's probabilities, computed once
        if "probs" not in cache:
            cache["probs"] = predictor.probabilities(eval_set.images).numpy()
        return cache["probs"]

    def all_used(key: str) -> str:
        how = "the probabilities of the run's scoring pass (no new forward pass)" if reused \
            else "one forward pass over them, shared by every section that needs it"
        return used(key, n_labeled, f"all {n_labeled} labeled {esc(split_name)} images; "
                                    f"{how}.")

    def failures() -> str:
        if not ready:
            return note(f"skipped: {why}", "skip")
        from cnnlab.evaluate.failures import find_failures
        from cnnlab.report.explain_figures import failures_figure

        f = find_failures(clean_probs(), eval_set.labels.numpy(), n_gallery, seed)
        png = failures_figure(f, eval_set, classes, plots / "failures.png",
                              f"Failure modes on the {split_name} split")
        n_wrong = int((f.preds != f.labels)[f.labels >= 0].sum())
        return (f'<p class="muted">{n_wrong} of {int((f.labels >= 0).sum())} {split_name} '
                f"images are misclassified. Shown: {len(f.correct)} correct and {len(f.wrong)} "
                "wrong images picked at random (seeded), then the images with the highest "
                "cross-entropy loss.</p>" + all_used("failures")
                + figure(png, "failure gallery"))

    def cams() -> str:
        if not ready:
            return note(f"skipped: {why}", "skip")
        from cnnlab.evaluate.gradcam import has_conv
        from cnnlab.report.explain_figures import gradcam_figure

        if predictor.image_size < MIN_CAM_SIZE:
            return note(f"skipped: Grad-CAM needs images of at least {MIN_CAM_SIZE} px; this "
                        f"model sees {predictor.image_size} x {predictor.image_size}, where the "
                        "last convolution map is a pixel or two and the overlay shows nothing",
                        "skip")
        if not has_conv(predictor.module):
            return note(f"skipped: Grad-CAM needs convolution layers; the {cfg.get('model')} "
                        "model has none", "skip")
        png, res, idx = gradcam_figure(predictor, eval_set, plots / "gradcam.png", n_cam,
                                       seed=seed)
        return (f'<p class="muted">Grad-CAM of the predicted class at layer '
                f"<code>{esc(res.layer)}</code> (the last convolutional block), {split_name} "
                "images "
                "spread over the classes; red = regions that raise the class score most. "
                "Other layers: <code>cnnlab explain gradcam --layer NAME</code>.</p>"
                + used("gradcam", len(idx), f"the {len(idx)} {esc(split_name)} images shown, "
                       "computed for those only (float32).")
                + figure(png, "Grad-CAM overlays"))

    def robust() -> str:
        if not ready:
            return note(f"skipped: {why}", "skip")
        from cnnlab.evaluate.robustness import (
            EXAMPLE_ROWS,
            default_perturbations,
            robustness_table,
        )
        from cnnlab.report.explain_figures import examples_figure

        n = max_robust if max_robust is not None else \
            robust_sample_size(sum(len(s) for _, s in splits.items()), n_labeled)
        n_ex = min(n_gallery, 8)
        fast = fast_predictor(predictor, precision, n * len(default_perturbations())
                              + n_ex * len(EXAMPLE_ROWS))
        rows = robustness_table(fast, eval_set, seed=seed, max_items=n, stratified=True)
        png = examples_figure(fast, eval_set, plots / "robustness.png", n_ex,
                              seed, title=f"Perturbed {split_name} images with predictions",
                              probs=clean_probs())
        k = rows[0]["n"]
        line = used("robustness", k, (
            f"{'all' if k >= n_labeled else 'a stratified sample of'} {k} of the {n_labeled} "
            f"labeled {esc(split_name)} images (each class in its share, seeded), each scored "
            f"clean and under {len(rows) - 1} perturbations ({k * len(rows)} forward passes, "
            f"{esc(engine_text(fast))}); the pictures: {n_ex} more images in "
            f"{len(EXAMPLE_ROWS)} versions. <code>cnnlab explain robustness</code> runs on all."))
        return _robust_table(rows, split_name, n_labeled, seed) + line + \
            figure(png, "perturbed examples")

    def roc() -> str:
        if not ready:
            return note(f"skipped: {why}", "skip")
        from cnnlab.report.curves import roc_pr_figure

        png, info = roc_pr_figure(eval_set.labels.numpy(), clean_probs(), classes,
                                  plots / "roc_pr.png", f"{split_name} split",
                                  cfg.get("positive_class") or None)
        if len(classes) == 2:
            what = (f"Positive class: <b>{esc(info['positive'])}</b>. Crosses mark the 0.5 "
                    "threshold cnnlab predicts with (argmax); circles and squares the thresholds "
                    "with the best F1 and the best balanced accuracy (see Thresholds).")
        else:
            what = ("One curve per class against all the others (one-vs-rest). The dotted "
                    "chance level of a precision-recall curve is the class's share of the split.")
        return (f'<p class="muted">{what} AUC = area under the ROC curve; AP = average '
                "precision (area under the precision-recall curve).</p>" + all_used("roc")
                + figure(png, "ROC and precision-recall curves", "", 980))

    def thresholds() -> str:
        if not ready:
            return note(f"skipped: {why}", "skip")
        if len(classes) != 2:
            return note("skipped: a decision threshold applies to binary tasks; this one has "
                        f"{len(classes)} classes", "skip")
        return _threshold_section(eval_set.labels.numpy(), clean_probs(), classes, split_name,
                                  cfg.get("positive_class") or None) + all_used("thresholds")

    def calibration() -> str:
        if not ready:
            return note(f"skipped: {why}", "skip")
        return all_used("calibration") + _calibration(plots, metrics, split_name,
                                                      eval_set.labels.numpy(), clean_probs())

    add("roc", "ROC and precision-recall", roc)
    add("calibration", "Calibration", calibration)
    add("thresholds", "Thresholds", thresholds)
    add("failures", "Failure gallery", failures)
    add("gradcam", "Grad-CAM", cams)
    add("robustness", "Robustness", robust)

    page = _page(run_dir, cfg, sections, notes, time.perf_counter() - t0)
    # Seconds per section, for whoever wonders why a report was slow.
    page += "<!-- timings: " + json.dumps({k: round(v, 2) for k, v in timings.items()}) + " -->\n"
    out = run_dir / "report.html"
    atomic_write_bytes(out, page.encode("utf-8"))
    return out


def _curves(run_dir: Path, plots: Path, history: list[dict], cfg: dict) -> str:
    png = plots / "curves.png"
    if not png.is_file():
        if not history:
            return note("no training history (metrics.csv) to plot", "skip")
        from cnnlab.report.plots import plot_curves

        plot_curves(history, png, f"{cfg.get('model')} learning curves")
    last = history[-1] if history else {}
    txt = ""
    if last:
        txt = (f'<p class="muted">Last epoch ({last.get("epoch")}): train loss '
               f"{fmt(last.get('train_loss'))}, val loss {fmt(last.get('val_loss'))}. A val loss "
               "rising while the train loss falls means overfitting.</p>")
    return txt + figure(png, "learning curves", "loss and accuracy per epoch", 920)


def _calibration(plots: Path, metrics: dict, split: str, labels: object, probs: object) -> str:
    """Reliability diagram of the eval split; with --calibrate, ECE/NLL before and after."""
    from cnnlab.evaluate.calibration import ece, reliability
    from cnnlab.report.calibration import reliability_figure

    cal = metrics.get("calibration") or {}
    mine = cal.get(split) if isinstance(cal.get(split), dict) else None
    png = plots / "reliability.png"
    title = f"Reliability diagram ({split})"
    if mine:
        reliability_figure(mine["reliability_after"], png, title, mine["reliability_before"],
                           mine["ece_after"], mine["ece_before"])
        rows = "".join(
            f"<tr><td>{esc(n)}</td><td>{fmt(c['ece_before'])}</td><td>{fmt(c['ece_after'])}</td>"
            f"<td>{fmt(c['nll_before'])}</td><td>{fmt(c['nll_after'])}</td></tr>"
            for n, c in cal.items() if isinstance(c, dict) and "ece_before" in c)
        text = (f'<p class="muted">Temperature scaling fitted on the validation split: '
                f"T = <b>{fmt(cal.get('temperature'), 3)}</b> (logits divided by T; above 1 the "
                "model was over-confident). It never changes a prediction, only how sure the "
                "probabilities are. ECE = expected calibration error over 15 confidence bins; "
                "NLL = mean negative log-likelihood.</p>"
                "<table><tr><th>split</th><th>ECE before</th><th>ECE after</th>"
                f"<th>NLL before</th><th>NLL after</th></tr>{rows}</table>")
    else:
        e = ece(probs, labels)
        reliability_figure(reliability(probs, labels), png, title, ece_after=e)
        skipped = cal.get("skipped")
        text = (f'<p class="muted">{split} split: ECE (expected calibration error, 15 bins) = '
                f"<b>{fmt(e)}</b>. Bars below the diagonal mean over-confidence. "
                + (f"Calibration skipped: {esc(skipped)}." if skipped else
                   "<code>--calibrate</code> fits a temperature on the validation split.")
                + "</p>")
    return text + figure(png, "reliability diagram",
                         "accuracy of the images in each confidence bin; dashed: perfectly "
                         "calibrated; below: share of images per bin", 520)


def _confusion(plots: Path, metrics: dict, classes: list[str]) -> str:
    split = next((s for s in ("test", "val", "train") if isinstance(metrics.get(s), dict)), None)
    if split is None or "confusion_matrix" not in metrics[split]:
        return note("no confusion matrix in metrics.json", "skip")
    png = plots / "confusion_matrix.png"
    if not png.is_file():
        from cnnlab.report.plots import plot_confusion

        plot_confusion(metrics[split]["confusion_matrix"], classes, png,
                       f"Confusion matrix ({split})")
    return figure(png, f"confusion matrix ({split})",
                  f"{split} split: rows are true classes, columns predicted; colour = share of "
                  "the true class", 640)


def _page(run_dir: Path, cfg: dict, sections: list[tuple[str, str, str]], notes: list[str],
          seconds: float) -> str:
    from cnnlab.version import __version__

    now = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    nav = "".join(f'<a href="#{k}">{esc(t)}</a>' for k, t, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{esc(t)}</h2>{b}</section>' for k, t, b in sections)
    top_notes = "".join(note(n, "warn") for n in notes)
    title = f"{run_dir.name} \u2013 cnnlab report"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f'<header><div class="wrap"><h1>{esc(run_dir.name)}</h1><div class="meta">'
        f"cnnlab report &middot; model <b>{esc(cfg.get('model'))}</b> &middot; data "
        f"{esc(cfg.get('data') or 'built-in digits')} &middot; {esc(now)}</div></div></header>"
        f'<nav><div class="wrap">{nav}</div></nav><main class="wrap">{top_notes}{body}</main>'
        f'<footer class="wrap">Generated by cnnlab {esc(__version__)} in {seconds:.1f} s. '
        "Regenerate with <code>cnnlab report "
        f"{esc(run_dir)}</code>.</footer><script>{SORT_JS}</script></body></html>\n")
