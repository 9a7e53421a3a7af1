"""run_doctor: read the data once, run every check, write doctor.json and doctor.html."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from cnnlab.console import console, data_progress
from cnnlab.data.cache import CacheMiss
from cnnlab.data.imageset import DataSplits
from cnnlab.data.load import LoadOptions, load_data
from cnnlab.doctor import duplicates, features, labels
from cnnlab.doctor.checks import CHECKS, DoctorContext
from cnnlab.doctor.pool import Pool, build_pool, source_root
from cnnlab.doctor.progress import Phases
from cnnlab.errors import CnnlabError, name_list
from cnnlab.io import atomic_write_bytes

NAMES = tuple(c.name for c in CHECKS)  # what --skip takes


def run_doctor(data: str | Path | DataSplits | None = None, options: LoadOptions | None = None,
               *, out: str | Path = "doctor", distance: int = duplicates.DEFAULT_DISTANCE,
               min_similarity: float = duplicates.DEFAULT_SIMILARITY, folds: int = 5,
               feature_kind: str = "auto", weights: str | Path | None = None,
               fix: bool = False, skip: tuple[str, ...] | list[str] = (), limit: int = 50,
               seed: int = 0, root: str | Path | None = None, verbose: bool = True) -> dict:
    """Check `data` (a path, None = digits, or loaded DataSplits); write out/doctor.{json,html}.

    `root` names the folder file ids are relative to when DataSplits are given (for --fix and
    file checks). Returns the doctor.json content.
    """
    t0 = time.perf_counter()
    _check_args(distance, min_similarity, folds, feature_kind, skip)
    if "labels" not in skip:
        labels.require_cleanlab()
    opts = options or LoadOptions()
    skip = tuple(dict.fromkeys(skip))
    phases = Phases(verbose)
    active = [c for c in CHECKS if c.name not in skip]
    # Only the label check, the far-from-class outliers and the shift score use features.
    asked = feature_kind if any(c.uses_features for c in active) else "pixels"
    if isinstance(data, DataSplits):
        splits, src_root = data, Path(root) if root else None
        source, fmt_name = data.source or "data", "in memory"
    else:
        with phases.phase("load", "reading data"):
            splits = _train_decode(data, opts, asked, verbose) or \
                load_data(data, opts, data_progress(verbose, min_total=0))
        src_root = Path(root) if root else source_root(
            Path(data) if data is not None else None, opts.format, opts.image_dir)
        source = str(data) if data is not None else "built-in digits"
        fmt_name = splits.train.meta.get("format", opts.format)
    pool = build_pool(splits, src_root)
    if len(pool) == 0:
        raise CnnlabError(f"{source}: no images to check")
    with phases.phase("scan", "hashing and downscaling", len(pool)) as tick:
        scan = features.scan(pool.parts(), tick=tick)
    kind, side, feature_note = _pick_features(asked, pool, opts)
    if feature_note and verbose:
        console.print(f"  note: {feature_note}")
    with phases.phase("features", f"features ({kind}{f', {side} px' if side else ''})",
                      len(pool) if kind == "backbone" else None) as tick:
        raw = _backbone(pool, side, opts, tick, verbose) if kind == "backbone" else scan.pixels
        feats = features.reduce(raw, seed=seed)

    report: dict = {"data": _data_info(pool, splits, source, fmt_name),
                    "settings": {"distance": distance, "min_similarity": min_similarity,
                                 "folds": folds, "features": kind,
                                 "features_asked": feature_kind, "features_note": feature_note,
                                 "backbone_side": side, "seed": seed,
                                 "skipped_checks": list(skip)}}
    report["unreadable_files"] = _unreadable(splits)
    ctx = DoctorContext(pool, scan, feats, kind, side, phases, distance, min_similarity, folds,
                        seed, limit, weights)
    for check in CHECKS:
        report.update(check.run(ctx) if check in active else check.skipped())

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if fix:
        from cnnlab.doctor.fix import write_fix

        report["fix"] = write_fix(pool, out_dir, ctx.groups, ctx.leak_items, ctx.issues)
    report["summary"] = _summary(report)
    report["timings"] = phases.seconds
    report["seconds"] = round(time.perf_counter() - t0, 2)
    from cnnlab.doctor.page import build_page

    with phases.phase("page", "writing doctor.html"):
        build_page(report, pool, out_dir, limit)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    atomic_write_bytes(out_dir / "doctor.json",
                       json.dumps(report, indent=1, default=_json_default).encode("utf-8"))
    return report


def _train_decode(data: str | Path | None, opts: LoadOptions, feature_kind: str,
                  verbose: bool) -> DataSplits | None:
    """The files as a pretrained backbone's `train` decoded them (BACKBONE_SIDE px), when that
    decode is in the cache and backbone features may be used (`feature_kind` is not
    "pixels"), else None.

    Mapping train's decode costs nothing; decoding thousands of photos again at the doctor's
    own 64 px costs seconds, and the backbone would then read them a third time at its side.
    The checks that work on pixels shrink every image to 64 px first either way.
    """
    if data is None or feature_kind == "pixels" or opts.image_size is not None \
            or not opts.use_cache:
        return None
    try:
        splits = load_data(data, replace(opts, image_size=features.BACKBONE_SIDE,
                                         cache_only=True))
    except CacheMiss:
        return None
    if verbose:
        console.print(f"  decode: reusing the {features.BACKBONE_SIDE}-px images an earlier "
                      "`cnnlab train` decoded (the decode cache): no file is read again",
                      highlight=False)
    return splits


def _check_args(distance: int, min_similarity: float, folds: int, feature_kind: str,
                skip: tuple[str, ...] | list[str]) -> None:
    if not 0 <= distance <= 32:
        raise CnnlabError(f"--distance {distance}: choose 0 to 32 bits (of 64)")
    if not -1.0 <= min_similarity <= 1.0:
        raise CnnlabError(f"--min-similarity {min_similarity}: choose a value in [-1, 1]")
    if folds < 2:
        raise CnnlabError(f"--folds {folds}: k-fold needs at least 2 folds")
    if feature_kind not in features.FEATURES:
        raise CnnlabError(f"--features {feature_kind!r}: choose "
                          f"{' or '.join(features.FEATURES)}")
    bad = sorted(set(skip) - set(NAMES))
    if bad:
        raise CnnlabError(f"--skip {', '.join(bad)}: choose from {', '.join(NAMES)}")


def _data_info(pool: Pool, splits: DataSplits, source: str, fmt_name: str) -> dict:
    first = next(iter(pool.sets.values()))
    c, h, w = first.images.shape[1:]
    return {"source": source, "format": fmt_name, "classes": list(pool.classes),
            "sizes": {n: len(s) for n, s in pool.sets.items()},
            "shape": f"{c} x {h} x {w}", "split_note": splits.split_note,
            "root": str(pool.root) if pool.root else None}


def _pick_features(asked: str, pool: Pool, opts: LoadOptions) -> tuple[str, int | None,
                                                                        str | None]:
    """(features used, side the backbone sees or None, note when backbone fell back)."""
    c, h, w = next(iter(pool.sets.values())).images.shape[1:]
    if asked == "pixels":
        return "pixels", None, None
    native = features.native_side(pool.paths, (h, w))
    kind, note = features.choose(asked, c, native)
    side = features.backbone_side(native, opts.image_size) if kind == "backbone" else None
    return kind, side, note


def _backbone(pool: Pool, side: int, opts: LoadOptions, tick: Callable[[int], None],
              verbose: bool = False) -> np.ndarray:
    """Backbone features: those `train` stored for the same files, backbone, side and precision
    (data/feature_store.py), else computed (and stored); files decoded smaller than `side` (the
    64-px default) are read again."""
    decoded = int(next(iter(pool.sets.values())).images.shape[-1])
    files = [p for p in pool.paths if p is not None]
    from_files = opts.image_size is None and decoded < side and len(files) == len(pool)
    crop = None if from_files else opts.crop_size
    engine = features.engine_for(len(pool))
    keys = features.store_keys(pool, side, opts.resize, crop, engine) \
        if opts.use_cache and len(files) == len(pool) and (from_files or decoded == side) else []
    stored = features.stored(keys)
    if stored is not None:
        if verbose:
            console.print(f"  features: reusing the stored backbone features of {len(pool)} "
                          f"images (the same files, backbone, {side} px and precision as an "
                          "earlier `cnnlab train --freeze all` or doctor run)", highlight=False)
        tick(len(pool))
        return stored
    if from_files:
        raw = features.backbone_features(features.file_chunks(files, side, opts.resize), side,
                                         tick=tick, engine=engine)
    else:
        raw = features.backbone_features(pool.parts(), side, tick=tick, engine=engine)
    features.store(keys, raw)
    return raw


def _label_status(lab: dict) -> dict:
    """The label check in a few words for the summary: status, accuracy, what to try."""
    s = lab.get("summary") or {}
    return {"status": lab.get("status", "not checked"), "reliable": lab.get("reliable"),
            "reason": lab.get("reason"), "suggest": lab.get("suggest"),
            "accuracy": s.get("out_of_sample_accuracy"), "needed_accuracy":
                s.get("needed_accuracy")}


def _unreadable(splits: DataSplits) -> dict:
    """The files --skip-bad left out because they could not be decoded (not checked at all)."""
    meta = splits.train.meta
    items = list(meta.get("skipped_bad_files") or [])
    return {"n": int(meta.get("skipped_bad_images") or len(items)), "items": items}


def _summary(report: dict) -> dict:
    """Counts for the cards and plain-language findings; None = not checked (never 0)."""
    leaks, dup, lab = report["leaks"], report["duplicates"], report["label_issues"]
    out, files = report["outliers"], report["unusual_files"]
    findings = _leak_findings(report) if leaks["checked"] else []
    if dup["checked"]:
        exact_within = sum(1 for g in dup["groups"]
                           if g["kind"] == "exact" and not g["cross_split"])
        if exact_within:
            findings.append(f"{exact_within} group{'s' if exact_within > 1 else ''} of "
                            "pixel-identical images within one split.")
    findings += _label_findings(lab)
    if out["checked"]:
        if out["by_kind"]["blank"]:
            findings.append(f"{out['by_kind']['blank']} images are nearly blank or constant.")
        if out["by_kind"]["far"]:
            findings.append(f"{out['by_kind']['far']} images are far from every class in "
                            "feature space: look for images that do not belong in the data "
                            "set.")
    if files["checked"] and files["n"]:
        findings.append(f"{files['n']} files have an unusual pixel size, aspect ratio or mode "
                        "(a fact about the files, not their content: images are resized on "
                        "load).")
    findings += _balance_findings(report)
    bad = report["unreadable_files"]
    if bad["n"]:
        shown = ", ".join(bad["items"][:5]) + (", ..." if len(bad["items"]) > 5 else "")
        many = bad["n"] > 1
        findings.append(f"{bad['n']} file{'s' if many else ''} could not be read as "
                        f"{'images' if many else 'an image'} and {'were' if many else 'was'} "
                        f"skipped (--skip-bad), so nothing above checked "
                        f"{'them' if many else 'it'}"
                        + (f": {shown} (all in doctor.json)" if shown else "") + ".")
    skipped = report["settings"]["skipped_checks"]
    not_checked = [k for k in NAMES if k in skipped or (k == "labels" and not lab["checked"])]
    if not_checked:
        findings.append(f"Not checked: {', '.join(not_checked)}.")
    labels_ok = lab["checked"] and lab["reliable"]
    return {"leaks": leaks["n"], "duplicate_groups": dup.get("n_groups"),
            "duplicate_items": dup.get("n_items"),
            "label_issues": len(lab["items"]) if labels_ok else None,
            "labels": _label_status(lab), "outliers": out["n"], "unusual_files": files["n"],
            "unreadable_files": bad["n"], "not_checked": not_checked, "findings": findings}


def _leak_findings(report: dict) -> list[str]:
    leaks, sizes = report["leaks"], report["data"]["sizes"]
    findings = []
    for split, n in leaks["by_split"].items():
        if n:
            findings.append(f"{n} of {sizes.get(split, 0)} {split} images "
                            f"({100 * n / max(sizes.get(split, 1), 1):.1f}%) have a copy in "
                            "train: their scores measure memory, not generalisation.")
    eff = leaks.get("effect") or {}
    for split in ("test", "val"):
        e = eff.get(split)
        if isinstance(e, dict) and e.get("n_leaked") and e.get("accuracy_without_leaks") \
                is not None:
            findings.append(f"Model accuracy on {split}: {e['accuracy']:.3f} with the leaked "
                            f"images, {e['accuracy_without_leaks']:.3f} without them.")
    return findings


def _label_findings(lab: dict) -> list[str]:
    if lab["status"] == "unreliable":
        try_ = f" Try {lab['suggest']}." if lab.get("suggest") else ""
        return [f"The label check is unreliable: {lab['reason']}. No label is called wrong."
                + try_]
    if lab["status"] == "checked" and lab["items"]:
        checked = lab["summary"].get("checked", 0)
        return [f"{len(lab['items'])} of {checked} labels look wrong to a model that never saw "
                "them: review the ranked list."]
    return []


def _balance_findings(report: dict) -> list[str]:
    findings, bal = [], report["balance"]
    for split, missing in (bal.get("missing") or {}).items():  # none when --skip balance
        findings.append(f"The {split} split has no images of {len(missing)} class(es): "
                        f"{name_list(missing, 5)}.")
    if bal.get("imbalance"):
        f = bal["imbalance"]
        findings.append(f"Training classes are imbalanced: {f['largest']} {f['largest_n']} vs "
                        f"{f['smallest']} {f['smallest_n']}.")
    for k, v in report["shift"].items():
        if k.startswith("train_vs_") and v["verdict"] != "no shift detected":
            findings.append(f"{v['verdict'].capitalize()} between train and "
                            f"{k[len('train_vs_'):]} (AUROC {v['auroc']:.2f}): the held-out "
                            "images differ from the training ones.")
    return findings


def summary_line(summary: dict) -> str:
    """One line of counts; a skipped check reads "not checked", an untrusted one "unreliable"."""
    def count(n: int | None, what: str, name: str) -> str:
        return f"{name} not checked" if n is None else f"{n} {what}{'' if n == 1 else 's'}"

    lab = summary["labels"]
    if lab["status"] == "unreliable":
        try_ = f"; try {lab['suggest']}" if lab.get("suggest") else ""
        labels_part = (f"label check unreliable (out-of-sample accuracy {lab['accuracy']:.2f}, "
                       f"needs {lab['needed_accuracy']:.2f}{try_})")
    elif lab["status"] == "not checked":
        why = lab.get("reason") or ""
        labels_part = "labels not checked" + (f" ({why})" if why and "--skip" not in why
                                              else "")
    else:
        labels_part = count(summary["label_issues"], "likely label error", "labels")
    return (f"doctor: {count(summary['leaks'], 'leaked held-out image', 'leaks')}, "
            f"{count(summary['duplicate_groups'], 'duplicate group', 'duplicates')}, "
            f"{labels_part}, {count(summary['outliers'], 'outlier', 'outliers')}, "
            f"{count(summary['unusual_files'], 'unusual file', 'unusual files')}"
            + (f", {count(summary['unreadable_files'], 'unreadable file', '')} skipped"
               if summary.get("unreadable_files") else ""))


def _json_default(o: object) -> object:
    if isinstance(o, (np.integer, np.floating, np.ndarray)):
        return o.tolist()  # Python numbers and lists
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
