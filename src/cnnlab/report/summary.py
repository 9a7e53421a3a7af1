"""report.html's Run summary: the headline cards, the facts of the run and what they mean."""

from __future__ import annotations

import json

from cnnlab.htmlkit import card, esc, kv_rows, num
from cnnlab.report.context import ReportContext

IMBALANCE_RATIO = 3.0  # largest / smallest training class at or above this: flagged
RUN_FILES = ("best.pt", "predictions.csv", "metrics.json", "metrics.csv", "config.yaml")


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
    train_acc = metrics["train"].get("accuracy") if isinstance(metrics.get("train"), dict) \
        else None
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


def _metric_attrs(path: str, v: object) -> str:
    return f' data-metric="{path}" data-value="{esc(json.dumps(v))}"'


def _cards(metrics: dict) -> str:
    final = next((s for s in ("test", "val", "train") if isinstance(metrics.get(s), dict)), None)
    m = metrics.get(final, {}) if final else {}
    base = metrics.get("baselines") or {}
    cards = []
    if final:
        for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                           ("auroc", "AUROC"), ("f1", "F1")):
            v = m.get(key)
            sub = f"{final} split, n = {m.get('n', '?')}"
            if key == "f1":
                label, sub = f1_label(m.get("average"), sub)
            cards.append(card(f"{final} {label}", num(v), sub,
                              value_attrs=_metric_attrs(f"{final}.{key}", v)))
    if base.get("majority") is not None:
        cards.append(card("majority baseline", num(base["majority"]),
                          f"random guess {num(base.get('random'))}",
                          value_attrs=_metric_attrs("baselines.majority", base["majority"])))
    return f'<div class="cards">{"".join(cards)}</div>'


def _train_time(metrics: dict) -> str:
    """Training seconds, with the frozen-backbone feature pass shown apart when there was one."""
    t = metrics.get("train_seconds")
    if not isinstance(t, (int, float)):
        return num(None)
    feat = metrics.get("feature_seconds") or 0.0
    return f"{t:.1f} s" + (f" (of which {feat:.1f} s computing backbone features once)"
                           if feat else "")


def _lr_origin(asked: object, chose: dict) -> str:
    """Where the run's rate came from, when the user gave none."""
    if asked is not None:
        return ""
    if "lr_test" in chose:
        return " (chosen by the recipe's range test)"
    if "lr" in chose:
        return " (chosen by the recipe: too short a run to test)"
    return " (the optimizer's default)"


def _facts(ctx: ReportContext) -> list[tuple[str, object]]:
    cfg, metrics, predictor = ctx.cfg, ctx.metrics, ctx.predictor
    rows = [("run folder", str(ctx.run_dir)), ("model", cfg.get("model")),
            ("data", ctx.data_info.get("source") or cfg.get("data") or "built-in digits")]
    if predictor is not None:
        n_params = sum(p.numel() for p in predictor.module.parameters())
        rows.append(("parameters", f"{n_params:,}"))
        rows.append(("input", f"{predictor.channels} x {predictor.image_size} x "
                              f"{predictor.image_size}"))
    ran = metrics.get("resolved") or cfg.get("resolved") or {}  # what ran, not what was asked
    lr = ran.get("lr", cfg.get("lr"))
    chose = ran.get("recipe") if isinstance(ran.get("recipe"), dict) else {}
    lr_text = "default" if lr is None else f"{lr:g}" + _lr_origin(cfg.get("lr"), chose)
    rows += [("optimizer", f"{cfg.get('optimizer')} (lr {lr_text}, "
                           f"batch {cfg.get('batch_size')}, schedule {cfg.get('schedule')})"),
             ("epochs", f"{metrics.get('epochs_run', '?')} of {cfg.get('epochs')}; best "
                        f"epoch {metrics.get('best_epoch', '?')}"
                        + (" (stopped early)" if metrics.get("stopped_early") else "")),
             ("training time", _train_time(metrics)),
             ("device", f"{ran.get('device', cfg.get('device'))}, precision "
                        f"{ran.get('precision', cfg.get('precision'))} (asked: "
                        f"{cfg.get('device')}, {cfg.get('precision')}); threads "
                        f"{ran.get('num_threads', '?')}")]
    if chose:  # --recipe fast's choices from the data (train/autorecipe.py)
        why = chose.get("why") or {}
        rows.append((f"recipe {cfg.get('recipe')} chose", "; ".join(
            f"{k} {'none' if v is None else v} ({why.get(k, '')})" for k, v in chose.items()
            if k not in ("why", "lr_test"))))
    return rows


def _files_row(ctx: ReportContext) -> str:
    """Links to the run's files that sit beside report.html (relative: the folder may move)."""
    links = [f'<a href="{esc(n)}" data-file="{esc(n)}">{esc(n)}</a>'
             for n in RUN_FILES if (ctx.run_dir / n).is_file()]
    return f"<tr><th>files</th><td>{' &middot; '.join(links)}</td></tr>" if links else ""


def summary_section(ctx: ReportContext) -> str:
    """Cards, the run's facts and files, the findings and the full configuration."""
    table = kv_rows(_facts(ctx)) + _files_row(ctx)
    conf = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(json.dumps(v))}</code></td></tr>"
                   for k, v in ctx.cfg.items())
    found = "".join(f"<li>{f}</li>" for f in findings(ctx.metrics, ctx.cfg, ctx.counts,
                                                       ctx.classes))
    side = f'<div class="findings"><h3>Findings</h3><ul>{found}</ul></div>' if found else ""
    return (_cards(ctx.metrics) + f'<div class="cols"><table class="kv">{table}</table>{side}'
            "</div><details><summary>Full configuration (config.yaml)</summary>"
            f'<table class="kv config">{conf}</table></details>')
