"""The doctor's checks, in the order they run: each a named Check that `--skip NAME` leaves out.

A check reads the shared scan (hashes, thumbnails, features) from a DoctorContext and returns
its entries of doctor.json; a skipped one returns the same entries marked "not checked", so no
count of it ever reads as a clean 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnnlab.doctor import balance, duplicates, features, labels, outliers
from cnnlab.doctor.pool import Pool
from cnnlab.doctor.progress import Phases


@dataclass
class DoctorContext:
    """What every check reads (the pool, its scan and features, the settings) and what the
    checks leave for --fix (duplicate groups, leaks, label issues)."""

    pool: Pool
    scan: object
    feats: np.ndarray
    kind: str
    side: int | None
    phases: Phases
    distance: int
    min_similarity: float
    folds: int
    seed: int
    limit: int
    weights: object = None
    groups: list[dict] = field(default_factory=list)
    leak_items: list[dict] = field(default_factory=list)
    issues: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Check:
    """One check: the name --skip takes, whether it reads the features, what it writes to
    doctor.json when it runs and when it is skipped."""

    name: str
    uses_features: bool
    run: Callable[[DoctorContext], dict]
    skipped: Callable[[], dict]


def not_checked(check: str) -> dict:
    """A section for a check left out with --skip: no count, so nothing reads as clean."""
    return {"checked": False, "status": "not checked", "skipped": f"--skip {check}",
            "items": [], "n": None}


def _duplicates(ctx: DoctorContext) -> dict:
    with ctx.phases.phase("duplicates", "duplicates and leaks"):
        ctx.groups, ctx.leak_items = duplicates.find_duplicates(ctx.pool, ctx.scan, ctx.distance,
                                                                ctx.min_similarity)
    groups, leak_items = ctx.groups, ctx.leak_items
    leaks = {"checked": True, "items": leak_items, "n": len(leak_items),
             "by_split": {n: sum(x["split"] == n for x in leak_items) for n in ("val", "test")},
             "effect": None}
    if ctx.weights is not None:
        from cnnlab.doctor.effect import leak_effect

        with ctx.phases.phase("effect", "accuracy with and without leaks"):
            leaks["effect"] = leak_effect(ctx.weights, ctx.pool, leak_items)
    return {"duplicates": {"checked": True, "groups": groups, "n_groups": len(groups),
                           "n_exact_groups": sum(g["kind"] == "exact" for g in groups),
                           "n_items": sum(g["size"] for g in groups)},
            "leaks": leaks}


def _labels(ctx: DoctorContext) -> dict:
    with ctx.phases.phase("labels", f"label check ({ctx.folds}-fold)", ctx.folds) as tick:
        ctx.issues, summary = labels.find_label_issues(ctx.feats, ctx.pool.labels,
                                                       len(ctx.pool.classes), ctx.folds,
                                                       ctx.seed, tick)
    return {"label_issues": _label_section(ctx, summary)}


def _label_section(ctx: DoctorContext, summary: dict) -> dict:
    """label_issues of doctor.json: the flags, or why the check does not trust itself."""
    pool, reliable, suggest = ctx.pool, summary.get("reliable"), None
    if reliable is False:
        suggest = "--features backbone" if ctx.kind == "pixels" else \
            "--image-size 224" if (ctx.side or 0) < features.BACKBONE_MAX else None
    status = "not checked" if summary.get("skipped") else \
        "checked" if reliable else "unreliable"
    items = [{**pool.describe(r["index"]), "index": r["index"],
              "given": pool.classes[r["given"]], "suggested": pool.classes[r["suggested"]],
              "p_given": r["p_given"], "p_suggested": r["p_suggested"], "quality": r["quality"]}
             for r in ctx.issues]
    return {"checked": status != "not checked", "status": status, "reliable": reliable,
            "reason": summary.get("reason") or summary.get("skipped"), "suggest": suggest,
            "items": items, "summary": summary, "skipped": summary.get("skipped")}


def _outliers(ctx: DoctorContext) -> dict:
    pool, scan = ctx.pool, ctx.scan
    with ctx.phases.phase("outliers", "outliers and unusual files",
                          sum(p is not None for p in pool.paths) or None) as tick:
        odd_files, headers = outliers.file_oddities(pool, tick)
        blank = outliers.blank_images(pool, scan)
        far = outliers.far_from_classes(pool, ctx.feats, scan.std < features.BLANK_STD,
                                        ctx.limit)
    # What a file is (pixel size, aspect, mode) is a fact about it, not about what it
    # shows: photos come in all sizes and are resized on load. Kept apart from content.
    return {"outliers": {"checked": True, "items": blank + far, "n": len(blank) + len(far),
                         "by_kind": {"blank": len(blank), "far": len(far)}},
            "unusual_files": {"checked": True, "items": odd_files, "n": len(odd_files),
                              "headers": headers}}


def _balance(ctx: DoctorContext) -> dict:
    return {"balance": balance.class_balance(ctx.pool)}


def _shift(ctx: DoctorContext) -> dict:
    with ctx.phases.phase("shift", "train-vs-test shift"):
        return {"shift": balance.split_shift(ctx.pool, ctx.feats, ctx.seed)}


CHECKS = [
    # Leaks are cross-split duplicates: skipping duplicates leaves them not checked either.
    Check("duplicates", False, _duplicates,
          lambda: dict.fromkeys(("duplicates", "leaks"), not_checked("duplicates"))),
    Check("labels", True, _labels,
          lambda: {"label_issues": {**not_checked("labels"), "summary": {}}}),
    # The file headers are read in the same pass as the outliers.
    Check("outliers", True, _outliers,
          lambda: dict.fromkeys(("outliers", "unusual_files"), not_checked("outliers"))),
    Check("balance", False, _balance, lambda: {"balance": not_checked("balance")}),
    Check("shift", True, _shift, lambda: {"shift": {"skipped": "--skip shift"}}),
]
