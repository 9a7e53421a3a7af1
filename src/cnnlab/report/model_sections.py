"""report.html's sections that run the model on the scored split: ROC, Calibration,
Thresholds, Failure gallery, Grad-CAM and Robustness.

The figure helpers of report/ stay free of evaluate/: these sections import it inside the
function, where they need it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from cnnlab.htmlkit import esc, figure, note, num
from cnnlab.report.context import ReportContext, used
from cnnlab.report.engines import engine_text

MIN_CAM_SIZE = 16  # px: below this the last conv map is a pixel or two, a heat map says nothing
# Robustness probes on a stratified sample: 1 in ROBUST_PER images, ROBUST_MIN..ROBUST_MAX. Each
# sampled image is scored once per perturbation (8 times), so the probes cost about a sixth of
# the run's own feature pass over all its images: the report stays in proportion to the run
# (1,980 photos: 1 in 40 made the report 26% of the run on the loaded 2-core machine).
ROBUST_PER, ROBUST_MIN, ROBUST_MAX = 50, 32, 100


def needs_model(render: Callable[[ReportContext], str]) -> Callable[[ReportContext], str]:
    """A section that says why it is skipped where there is no model or no labeled data."""
    @functools.wraps(render)
    def guarded(ctx: ReportContext) -> str:
        return render(ctx) if ctx.ready else note(f"skipped: {ctx.why_not}", "skip")
    return guarded


def all_used(ctx: ReportContext, key: str) -> str:
    """The Images used line of a section that reads the shared probabilities."""
    how = "the probabilities of the run's scoring pass (no new forward pass)" if ctx.reused \
        else "one forward pass over them, shared by every section that needs it"
    return used(key, ctx.n_labeled, f"all {ctx.n_labeled} labeled {esc(ctx.split_name)} "
                                    f"images; {how}.")


def robust_sample_size(n_images: int, n_labeled: int) -> int:
    """How many labeled images the report's robustness probes score: 1 in ROBUST_PER of the
    run's `n_images` (every split), within ROBUST_MIN..ROBUST_MAX, at most all labeled ones."""
    return min(n_labeled, max(ROBUST_MIN, min(ROBUST_MAX, n_images // ROBUST_PER)))


@needs_model
def roc_section(ctx: ReportContext) -> str:
    """ROC and precision-recall curves (one per class against the rest above two classes)."""
    from cnnlab.report.curves import roc_pr_figure

    png, info = roc_pr_figure(ctx.eval_set.labels.numpy(), ctx.clean_probs(), ctx.classes,
                              ctx.plots / "roc_pr.png", f"{ctx.split_name} split",
                              ctx.cfg.get("positive_class") or None)
    if len(ctx.classes) == 2:
        what = (f"Positive class: <b>{esc(info['positive'])}</b>. Crosses mark the 0.5 "
                "threshold cnnlab predicts with (argmax); circles and squares the thresholds "
                "with the best F1 and the best balanced accuracy (see Thresholds).")
    else:
        what = ("One curve per class against all the others (one-vs-rest). The dotted "
                "chance level of a precision-recall curve is the class's share of the split.")
    return (f'<p class="muted">{what} AUC = area under the ROC curve; AP = average '
            "precision (area under the precision-recall curve).</p>" + all_used(ctx, "roc")
            + figure(png, "ROC and precision-recall curves", "", 980))


@needs_model
def calibration_section(ctx: ReportContext) -> str:
    """Reliability diagram of the scored split; with --calibrate, ECE/NLL before and after."""
    from cnnlab.evaluate.calibration import ece, reliability
    from cnnlab.report.calibration import reliability_figure

    split, labels, probs = ctx.split_name, ctx.eval_set.labels.numpy(), ctx.clean_probs()
    cal = ctx.metrics.get("calibration") or {}
    mine = cal.get(split) if isinstance(cal.get(split), dict) else None
    png = ctx.plots / "reliability.png"
    title = f"Reliability diagram ({split})"
    if mine:
        reliability_figure(mine["reliability_after"], png, title, mine["reliability_before"],
                           mine["ece_after"], mine["ece_before"])
        rows = "".join(
            f"<tr><td>{esc(n)}</td><td>{num(c['ece_before'])}</td><td>{num(c['ece_after'])}</td>"
            f"<td>{num(c['nll_before'])}</td><td>{num(c['nll_after'])}</td></tr>"
            for n, c in cal.items() if isinstance(c, dict) and "ece_before" in c)
        text = (f'<p class="muted">Temperature scaling fitted on the validation split: '
                f"T = <b>{num(cal.get('temperature'), 3)}</b> (logits divided by T; above 1 the "
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
                f"<b>{num(e)}</b>. Bars below the diagonal mean over-confidence. "
                + (f"Calibration skipped: {esc(skipped)}." if skipped else
                   "<code>--calibrate</code> fits a temperature on the validation split.")
                + "</p>")
    return all_used(ctx, "calibration") + text + figure(
        png, "reliability diagram", "accuracy of the images in each confidence bin; dashed: "
        "perfectly calibrated; below: share of images per bin", 520)


@needs_model
def thresholds_section(ctx: ReportContext) -> str:
    """Precision, recall and F1 of the positive class at each decision threshold (binary)."""
    from cnnlab.report.curves import positive_index, threshold_table

    classes, split = ctx.classes, ctx.split_name
    if len(classes) != 2:
        return note("skipped: a decision threshold applies to binary tasks; this one has "
                    f"{len(classes)} classes", "skip")
    labels, probs = ctx.eval_set.labels.numpy(), ctx.clean_probs()
    keep = labels >= 0
    pos = positive_index(classes, ctx.cfg.get("positive_class") or None)
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
            + "</tbody></table>" + all_used(ctx, "thresholds"))


@needs_model
def failures_section(ctx: ReportContext) -> str:
    """Correct and wrong images picked at random, then the highest-loss ones."""
    from cnnlab.evaluate.failures import find_failures
    from cnnlab.report.explain_figures import failures_figure

    split = ctx.split_name
    f = find_failures(ctx.clean_probs(), ctx.eval_set.labels.numpy(), ctx.n_gallery, ctx.seed)
    png = failures_figure(f, ctx.eval_set, ctx.classes, ctx.plots / "failures.png",
                          f"Failure modes on the {split} split")
    n_wrong = int((f.preds != f.labels)[f.labels >= 0].sum())
    return (f'<p class="muted">{n_wrong} of {int((f.labels >= 0).sum())} {split} '
            f"images are misclassified. Shown: {len(f.correct)} correct and {len(f.wrong)} "
            "wrong images picked at random (seeded), then the images with the highest "
            "cross-entropy loss.</p>" + all_used(ctx, "failures")
            + figure(png, "failure gallery"))


@needs_model
def gradcam_section(ctx: ReportContext) -> str:
    """Grad-CAM overlays of the predicted class on a few images spread over the classes."""
    from cnnlab.evaluate.gradcam import has_conv
    from cnnlab.report.explain_figures import gradcam_figure

    predictor, split = ctx.predictor, ctx.split_name
    if predictor.image_size < MIN_CAM_SIZE:
        return note(f"skipped: Grad-CAM needs images of at least {MIN_CAM_SIZE} px; this "
                    f"model sees {predictor.image_size} x {predictor.image_size}, where the "
                    "last convolution map is a pixel or two and the overlay shows nothing",
                    "skip")
    if not has_conv(predictor.module):
        return note(f"skipped: Grad-CAM needs convolution layers; the {ctx.cfg.get('model')} "
                    "model has none", "skip")
    png, res, idx = gradcam_figure(predictor, ctx.eval_set, ctx.plots / "gradcam.png",
                                   ctx.n_cam, seed=ctx.seed)
    return (f'<p class="muted">Grad-CAM of the predicted class at layer '
            f"<code>{esc(res.layer)}</code> (the last convolutional block), {split} "
            "images "
            "spread over the classes; red = regions that raise the class score most. "
            "Other layers: <code>cnnlab explain gradcam --layer NAME</code>.</p>"
            + used("gradcam", len(idx), f"the {len(idx)} {esc(split)} images shown, "
                   "computed for those only (float32).")
            + figure(png, "Grad-CAM overlays"))


@needs_model
def robustness_section(ctx: ReportContext) -> str:
    """Accuracy under perturbations on a stratified sample, and perturbed examples."""
    from cnnlab.evaluate.robustness import EXAMPLE_ROWS, default_perturbations
    from cnnlab.evaluate.robustness import robustness_table as table
    from cnnlab.report.explain_figures import examples_figure

    split, n_labeled = ctx.split_name, ctx.n_labeled
    n = ctx.max_robust if ctx.max_robust is not None else \
        robust_sample_size(sum(len(s) for _, s in ctx.splits.items()), n_labeled)
    n_ex = min(ctx.n_gallery, 8)
    # The clean rows read the scoring pass's probabilities: only the perturbed ones need passes.
    fast = ctx.fast_predictor(n * (len(default_perturbations()) - 1) +
                              n_ex * (len(EXAMPLE_ROWS) - 1))
    rows = table(fast, ctx.eval_set, seed=ctx.seed, max_items=n, stratified=True,
                 clean_probs=ctx.clean_probs())
    png = examples_figure(fast, ctx.eval_set, ctx.plots / "robustness.png", n_ex,
                          ctx.seed, title=f"Perturbed {split} images with predictions",
                          probs=ctx.clean_probs())
    k = rows[0]["n"]
    line = used("robustness", k, (
        f"{'all' if k >= n_labeled else 'a stratified sample of'} {k} of the {n_labeled} "
        f"labeled {esc(split)} images (each class in its share, seeded), each scored "
        f"clean (the scoring pass's predictions) and under {len(rows) - 1} perturbations "
        f"({k * (len(rows) - 1)} forward passes, "
        f"{esc(engine_text(fast))}); the pictures: {n_ex} more images in "
        f"{len(EXAMPLE_ROWS)} versions. <code>cnnlab explain robustness</code> runs on all."))
    return _robust_table(rows, split, n_labeled, ctx.seed) + line + \
        figure(png, "perturbed examples")


def _robust_table(rows: list[dict], split: str, total: int, seed: int = 0) -> str:
    from cnnlab.evaluate.robustness import NOISE_DEFINITION

    body = "".join(
        f"<tr><th>{esc(r['perturbation'])}</th><td>{esc(r['description'])}</td>"
        f'<td class="num" data-robust="{esc(r["perturbation"])}">{num(r["accuracy"])}</td>'
        f"<td class='num {'neg' if r['change'] < -0.05 else ''}'>{r['change']:+.4f}</td>"
        f"<td class='num'>{num(r['unchanged'])}</td></tr>" for r in rows)
    n = rows[0]["n"]
    which = f"all {n}" if n >= total else f"a stratified, seeded sample of {n} of the {total}"
    return (f'<p class="muted">Accuracy on {which} labeled {esc(split)} images (<code>cnnlab '
            f"explain robustness</code> runs on all). "
            f"{esc(NOISE_DEFINITION.replace('SEED', str(seed)))}; "
            "&ldquo;unchanged&rdquo; = share of predictions equal to those on the clean images."
            '</p><table class="sortable grid"><thead><tr><th>perturbation</th><th>what</th>'
            "<th>accuracy</th><th>change</th><th>unchanged</th></tr></thead><tbody>"
            + body + "</tbody></table>")
