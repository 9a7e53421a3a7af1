"""report.html's sections read off the run's files: Data, Learning curves, Metrics, Confusion."""

from __future__ import annotations

import json

from cnnlab.htmlkit import esc, figure, note, num
from cnnlab.report.context import SPLIT_ORDER, ReportContext
from cnnlab.report.summary import imbalance

METRIC_COLUMNS = (("n", "n"), ("accuracy", "accuracy"), ("balanced_accuracy", "balanced acc."),
                  ("loss", "loss"), ("precision", "precision"), ("recall", "recall"),
                  ("f1", "F1"), ("auroc", "AUROC"))
CLASS_COLUMNS = (("support", "support"), ("accuracy", "accuracy"), ("precision", "precision"),
                 ("recall", "recall"), ("f1", "F1"))


def metric_cell(path: str, v: object, digits: int = 4) -> str:
    """A table cell carrying its metrics.json path and exact value for machines (and tests)."""
    raw = "" if v is None else json.dumps(v)
    return (f'<td class="num" data-metric="{esc(path)}" data-value="{esc(raw)}">'
            f"{num(v, digits)}</td>")


def _class_table(classes: list[str], counts: dict[str, list[int]]) -> tuple[str, str]:
    """(the class counts per split with bars of the training share, the imbalance flag)."""
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
    table = (f'<table class="sortable grid"><thead><tr><th>class</th>{head}'
             f'<th>share of train</th></tr></thead><tbody>{"".join(body)}</tbody>'
             f"<tfoot><tr><th>total</th>{totals}<td></td></tr></tfoot></table>")
    flag = imbalance(list(train), classes)
    if not flag:
        return table, ""
    ratio = "no items" if flag["ratio"] == float("inf") else f"{flag['ratio']:.1f}x"
    return table, (
        f'<p class="note warn" id="imbalance-flag"><b>Imbalanced classes.</b> The '
        f"largest training class ({esc(flag['largest'])}, {flag['largest_n']}) is "
        f"{ratio} the smallest ({esc(flag['smallest'])}, {flag['smallest_n']}). Accuracy "
        "can look good while the small class is missed: read the per-class recall and "
        "the balanced accuracy, and consider <code>--class-weights auto</code> or "
        "<code>--sampler balanced</code>.</p>")


def data_section(ctx: ReportContext) -> str:
    """Class counts per split, the imbalance flag and the two baselines."""
    head_notes, cols, flag_html = [], [], ""
    if ctx.data_info.get("split_note"):
        head_notes.append(f'<p class="muted">Splits: {esc(ctx.data_info["split_note"])}.</p>')
    if ctx.counts:
        table, flag_html = _class_table(ctx.classes, ctx.counts)
        cols.append(table)
    base = ctx.metrics.get("baselines") or {}
    if base.get("random") is not None:
        on = "test" if isinstance(ctx.metrics.get("test"), dict) else "val"
        cols.append(
            f'<table class="kv"><tr><th>random guess accuracy</th>'
            f'{metric_cell("baselines.random", base["random"])}</tr>'
            f'<tr><th>majority-class accuracy<br><span class="muted">({esc(on)} split, '
            f'majority class of train)</span></th>'
            f'{metric_cell("baselines.majority", base["majority"])}</tr></table>')
    if not cols:
        return note("no data summary available", "skip")
    return "".join(head_notes) + flag_html + f'<div class="cols">{"".join(cols)}</div>'


def curves_section(ctx: ReportContext) -> str:
    """Loss and accuracy per epoch (plots/curves.png, drawn from metrics.csv when missing)."""
    png, history = ctx.plots / "curves.png", ctx.history
    if not png.is_file():
        if not history:
            return note("no training history (metrics.csv) to plot", "skip")
        from cnnlab.report.plots import plot_curves

        plot_curves(history, png, f"{ctx.cfg.get('model')} learning curves")
    last = history[-1] if history else {}
    txt = ""
    if last:
        txt = (f'<p class="muted">Last epoch ({last.get("epoch")}): train loss '
               f"{num(last.get('train_loss'))}, val loss {num(last.get('val_loss'))}. A val loss "
               "rising while the train loss falls means overfitting.</p>")
    return txt + figure(png, "learning curves", "loss and accuracy per epoch", 920)


def metrics_section(ctx: ReportContext) -> str:
    """One row of metrics per split, then the per-class metrics of each split."""
    metrics = ctx.metrics
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
                      CLASS_COLUMNS) + "</tr>" for c in ctx.classes if c in pc)
        opened = " open" if s == final else ""
        out.append(f"<details{opened}><summary>Per-class metrics: {esc(s)}</summary>"
                   f'<table class="sortable grid"><thead><tr><th>class</th>{chead}</tr></thead>'
                   f"<tbody>{body}</tbody></table></details>")
    return "".join(out)


def confusion_section(ctx: ReportContext) -> str:
    """The confusion matrix of the final split (plots/confusion_matrix.png)."""
    metrics = ctx.metrics
    split = next((s for s in ("test", "val", "train") if isinstance(metrics.get(s), dict)), None)
    if split is None or "confusion_matrix" not in metrics[split]:
        return note("no confusion matrix in metrics.json", "skip")
    png = ctx.plots / "confusion_matrix.png"
    if not png.is_file():
        from cnnlab.report.plots import plot_confusion

        plot_confusion(metrics[split]["confusion_matrix"], ctx.classes, png,
                       f"Confusion matrix ({split})")
    return figure(png, f"confusion matrix ({split})",
                  f"{split} split: rows are true classes, columns predicted; colour = share of "
                  "the true class", 640)
