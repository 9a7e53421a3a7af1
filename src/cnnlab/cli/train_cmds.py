"""train, evaluate, predict and models: the core commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from cnnlab.cli.app import app, cell
from cnnlab.cli.options import (
    DATA_ARG_HELP,
    MODEL_CODE_OPT,
    TRUST_CODE_OPT,
    setting_option,
    with_settings,
)
from cnnlab.console import console, out
from cnnlab.settings import GROUPS, check_positive_class


@app.command(no_args_is_help=False)
@with_settings(*GROUPS, config=True)
def train(
    path: Path | None = typer.Argument(None, help=DATA_ARG_HELP, show_default=False),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out (or the "
                                "newest one of this data and model) with its saved settings.",
                                rich_help_panel="Output"),
    resume_from: Path | None = typer.Option(None, "--resume-from", metavar="CKPT",
                                            help="Continue from this checkpoint (last.pt or "
                                            "epoch_K.pt) in its run folder.",
                                            rich_help_panel="Output"),
    force: bool = typer.Option(False, "--force", help="Start the run in --out again: removes "
                               "the files of that run (its manifest's) and nothing else; a "
                               "folder that holds no cnnlab run is refused.",
                               rich_help_panel="Output"),
    trust_code: bool = typer.Option(False, "--trust-model-code", help="With --resume or --config, "
                                    "import the custom model builder the config.yaml names "
                                    "without naming it with --model (runs that module's code).",
                                    rich_help_panel="Output"),
    settings: dict | None = None,
) -> None:
    """Train a classifier and write its run folder (checkpoints, metrics, plots, report)."""
    from cnnlab.run import train as run_train

    given = dict(settings or {})
    if path is not None:
        given["data"] = str(path)
    run_train(given, resume=resume, resume_from=resume_from, force=force, trust_code=trust_code)


def _predictor(weights: Path, device: str | None, precision: str | None,  # noqa: ANN202
               tta: str | None, model: str | None, trust_code: bool):
    """The loaded model, with --tta applied when given (checked: one-line error, exit 2)."""
    from cnnlab.api import load

    predictor = load(weights, device or "auto", precision or "32", model=model,
                     trust_code=trust_code)
    if tta is not None:
        from cnnlab.models.tta import parse_tta

        predictor.tta = parse_tta(tta)
    return predictor


WEIGHTS_OPT = typer.Option(..., "--weights", "-w", metavar="CKPT|RUN",
                           help="Checkpoint (best.pt, last.pt, .onnx) or a run folder.")
DEVICE_OPT = setting_option("device", "Where to run [default: auto].")
PRECISION_OPT = setting_option("precision", "Autocast precision [default: 32].")
TTA_OPT = setting_option("tta", "Test-time augmentation: none, flip, flip,shift, vflip, shift=2 "
                         "(probabilities averaged over the views) [default: the run's --tta].")


@app.command()
@with_settings("data", mode="saved")
def evaluate(
    weights: Path = WEIGHTS_OPT,
    path: Path | None = typer.Argument(None, help="Data [default: the data it was trained on]."),
    split: str | None = typer.Option(None, "--split", metavar="SPLIT",
                                     help="train|val|test, a list like "
                                     "train,val,test, or all (one row per split) [default: "
                                     "test, or all of an unpartitioned PATH]"),
    positive_class: str | None = typer.Option(None, "--positive-class", metavar="CLASS"),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON on stdout."),
    device: str | None = DEVICE_OPT,
    precision: str | None = PRECISION_OPT,
    tta: str | None = TTA_OPT,
    model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT,
    settings: dict | None = None,
) -> None:
    """Measure a trained model: accuracy, per-class metrics, AUROC, confusion matrix."""
    model = _predictor(weights, device, precision, tta, model_code, trust_code)
    check_positive_class(positive_class, model.classes, "model")  # before the data is read
    metrics = {name: model.evaluate(data, positive_class)
               for data, name in model.splits_for(path, split, **(settings or {}))}
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    print_metrics(metrics, model.classes)


def print_metrics(metrics: dict, classes: list[str]) -> None:
    """Rich tables of split metrics and per-class rows."""
    keys = ("accuracy", "loss", "precision", "recall", "f1", "auroc")
    t = Table(title="metrics")
    for col in ("split", "n", *keys):
        t.add_column(col, justify="right")
    for name, m in metrics.items():
        if not isinstance(m, dict) or "accuracy" not in m:
            continue
        t.add_row(name, str(m["n"]), *(cell(m.get(k)) for k in keys))
    out.print(t)
    for name, m in metrics.items():
        if not isinstance(m, dict) or "per_class" not in m:
            continue
        per_class = ("accuracy", "precision", "recall", "f1")
        pc = Table(title=f"{name}: per class")
        for col in ("class", "support", *per_class):
            pc.add_column(col, justify="right")
        for c in classes:
            r = m["per_class"][c]
            pc.add_row(c, str(r["support"]), *(cell(r[k]) for k in per_class))
        out.print(pc)


@app.command()
@with_settings("data", mode="saved")
def predict(
    weights: Path = WEIGHTS_OPT,
    path: Path | None = typer.Argument(None, help="Images to classify [default: the test split "
                                       "of the data it was trained on]."),
    split: str | None = typer.Option(None, "--split", metavar="SPLIT",
                                     help="train|val|test|all [default: test, or all of an "
                                     "unpartitioned PATH]"),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", "--output",
                             metavar="CSV", help="CSV to write."),
    device: str | None = DEVICE_OPT,
    precision: str | None = PRECISION_OPT,
    tta: str | None = TTA_OPT,
    model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT,
    settings: dict | None = None,
) -> None:
    """Write predictions.csv: id, label, class and one probability column per class."""
    model = _predictor(weights, device, precision, tta, model_code, trust_code)
    data, name = model.split_of(path, split, need_labels=False, **(settings or {}))
    if data.meta.get("predict_note"):  # e.g. sub-folders that are not the model's classes
        console.print(f"note: {data.meta['predict_note']}", highlight=False)
    rows = model.write_predictions(data, out)
    console.print(f"wrote {len(rows)} predictions ({name}) to {out}")


@app.command("models")
def models_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
    """List the model architectures."""
    from cnnlab.models import list_models

    specs = list_models()
    if as_json:
        print(json.dumps([{"name": s.name, "description": s.description, "family": s.family,
                           "fixed_size": s.fixed_size, "default_size": s.default_size,
                           "pretrained": s.pretrained} for s in specs], indent=2))
        return
    t = Table(title="models")
    for col in ("name", "family", "input", "pretrained", "description"):
        t.add_column(col)
    for s in specs:
        size = f"{s.fixed_size}x{s.fixed_size}" if s.fixed_size else f">= {s.min_size}"
        t.add_row(s.name, s.family, size, "yes" if s.pretrained else "", s.description)
    out.print(t)
