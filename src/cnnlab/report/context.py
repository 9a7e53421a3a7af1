"""What report.html's sections draw from: the run's files, and its model and data reloaded.

`load_context` reads config.yaml, metrics.json and metrics.csv, reloads best.pt and the data
when the caller (run.py finalize) did not hand them over, and picks the split the model's
sections score. The model's probabilities on it are computed once, on first use, and shared.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from cnnlab.errors import CnnlabError
from cnnlab.htmlkit import esc
from cnnlab.io import read_yaml
from cnnlab.settings import check_saved

SPLIT_ORDER = ("train", "val", "test")


@dataclass
class ReportContext:
    """One run as its report sees it (see build_report for the options)."""

    run_dir: Path
    cfg: dict
    metrics: dict
    history: list[dict]
    notes: list[str]
    splits: object
    predictor: object
    classes: list[str]
    data_info: dict
    counts: dict[str, list[int]]
    n_gallery: int = 10
    n_cam: int = 8
    max_robust: int | None = None
    seed: int = 0
    precision: str | None = None
    split_name: str | None = None
    eval_set: object = None
    reused: bool = False  # the probabilities came with the call (training's scoring pass)
    exported: object = None  # the model in an engine the caller built (run.py exported_model)
    probs: object = None  # the scored split's probabilities, once given or computed
    exported_predictor: object = None  # the predictor in an exported engine, once built

    @property
    def plots(self) -> Path:
        """The run's plots/ folder (figures are written there, then embedded)."""
        return self.run_dir / "plots"

    @property
    def ready(self) -> bool:
        """Whether the sections that run the model can: a model and labeled data."""
        return self.predictor is not None and self.eval_set is not None

    @property
    def why_not(self) -> str:
        """Why those sections are skipped when not ready."""
        return "needs the model and labeled data" + (f" ({self.notes[-1]})" if self.notes
                                                     else "")

    @property
    def n_labeled(self) -> int:
        """Labeled images of the scored split."""
        return int((self.eval_set.labels >= 0).sum()) if self.eval_set is not None else 0

    def fast_predictor(self, n_images: int) -> object:
        """The predictor for `n_images` forward passes in the run's precision
        (report/engines.py); an exported engine, once built, serves every later section."""
        return self._fast(n_images, self.precision)

    def clean_probs(self) -> object:
        """The scored split's probabilities: the run's own when given, else one pass, once
        (float32: in an exported engine where installed and the split pays the export)."""
        if self.probs is None:
            fast = self._fast(len(self.eval_set), "32")
            self.probs = fast.probabilities(self.eval_set.images).numpy()
        return self.probs

    def _fast(self, n_images: int, precision: str | None) -> object:
        from cnnlab.report.engines import fast_predictor

        if self.exported_predictor is not None:
            return self.exported_predictor
        fast = fast_predictor(self.predictor, precision, n_images, self.exported)
        if fast.engine:
            self.exported_predictor = fast
        return fast


def load_context(run_dir: str | Path, splits: object = None, predictor: object = None,
                 probs: dict | None = None, model: str | None = None,
                 trust_code: bool = False, **options: object) -> ReportContext:
    """The run folder read (and its model and data reloaded where not given) for the report."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise CnnlabError(f"{run_dir}: not a cnnlab run folder (no config.yaml)")
    cfg = check_saved(read_yaml(cfg_path), cfg_path)
    metrics = _read_metrics(run_dir / "metrics.json")
    notes: list[str] = []
    if not metrics:
        notes.append("metrics.json is missing: the run did not finish")
    splits, predictor = reload_run(run_dir, cfg, splits, predictor, notes, (model, trust_code))
    classes = list(predictor.classes) if predictor is not None else \
        list(next((m["per_class"] for m in metrics.values()
                   if isinstance(m, dict) and "per_class" in m), {}))
    data_info, counts = _data_counts(splits, metrics, classes)
    ctx = ReportContext(run_dir, cfg, metrics, read_history(run_dir / "metrics.csv"), notes,
                        splits, predictor, classes, data_info, counts, **options)
    if splits is not None:
        ctx.split_name, ctx.eval_set = eval_split(splits)
    if probs and ctx.split_name in probs:
        ctx.probs, ctx.reused = probs[ctx.split_name], True
    if ctx.precision is None:
        ctx.precision = (metrics.get("resolved") or cfg.get("resolved") or {}).get("precision")
    return ctx


def _read_metrics(path: Path) -> dict:
    try:
        metrics = json.loads(path.read_text()) if path.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{path}: unreadable ({exc})") from None
    if not isinstance(metrics, dict):
        raise CnnlabError(f"{path}: not a JSON object")
    return metrics


def _data_counts(splits: object, metrics: dict, classes: list[str]
                 ) -> tuple[dict, dict[str, list[int]]]:
    """(source and split note, class counts per split): from the data, else from metrics."""
    if splits is None:
        per_class = {n: metrics[n].get("per_class") for n in SPLIT_ORDER
                     if isinstance(metrics.get(n), dict)}
        return {}, {n: [pc[c]["support"] for c in classes] for n, pc in per_class.items() if pc}
    data_info = {"source": splits.source, "split_note": splits.split_note}
    counts = {n: s.class_counts() for n, s in splits.items() if len(s) and s.labeled}
    unlabeled = [f"{n}: {int((s.labels < 0).sum())} unlabeled images" for n, s in
                 splits.items() if len(s) and (s.labels < 0).any()]
    if unlabeled:
        data_info["split_note"] = "; ".join(filter(None, [splits.split_note, *unlabeled]))
    return data_info, counts


def read_history(path: Path) -> list[dict]:
    """metrics.csv as one dict per epoch (numbers as floats, the epoch as an int)."""
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


def reload_run(run_dir: Path, cfg: dict, splits: object, predictor: object,
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


def eval_split(splits: object) -> tuple[str, object] | tuple[None, None]:
    """The split the model's sections score: test, else val, else train (labeled ones only)."""
    for name in ("test", "val", "train"):
        s = splits.get(name)
        if s is not None and len(s) and bool((s.labels >= 0).any()):
            return name, s
    return None, None


def used(key: str, n: int, text: str) -> str:
    """The line saying how many images a section used (data-images carries the count)."""
    return (f'<p class="muted used" data-section="{esc(key)}" data-images="{int(n)}">'
            f"<b>Images used:</b> {text}</p>")
