"""train, evaluate, predict and models: the core commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from cnnlab.cli.app import app, cell, check_channels, parse_list, parse_model_args
from cnnlab.config import TrainConfig
from cnnlab.console import console
from cnnlab.errors import CnnlabError

DATA_HELP = ("Image folder, CSV index, .npy/.npz, CIFAR folder or IDX file "
             "(default: built-in digits).")


@app.command(no_args_is_help=False)
def train(
    path: Path | None = typer.Argument(None, help=DATA_HELP, show_default=False),
    format: str = typer.Option("auto", "--format", help="auto|folder|csv|npy|cifar|idx|digits"),
    model: str = typer.Option("cnn", "--model", "-m", help="Architecture (see `cnnlab models`)."),
    model_arg: list[str] = typer.Option([], "--model-arg", help="Model argument KEY=VALUE "
                                        "(repeatable), e.g. --model-arg hidden=512."),
    epochs: int | None = typer.Option(None, "--epochs", "-e", min=1, help="Epochs [default: 10]"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", min=1),
    lr: float | None = typer.Option(None, "--lr", min=0.0,
                                    help="Learning rate [default: 0.01 sgd, 0.003 adam/adamw, "
                                         "0.001 rmsprop]"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="sgd|adam|adamw|rmsprop"),
    momentum: float = typer.Option(0.9, "--momentum", min=0.0, help="SGD momentum."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", min=0.0),
    schedule: str = typer.Option("cosine", "--schedule", help="cosine|none"),
    image_size: int | None = typer.Option(None, "--image-size", min=1,
                                          help="Resize images to N x N [default: the data's own "
                                               "size for arrays, the model's for files]"),
    channels: int | None = typer.Option(None, "--channels", help="1 or 3 [default: the data's]"),
    resize: str = typer.Option("crop", "--resize",
                               help="crop (keep aspect, centre crop) | stretch"),
    val_split: float = typer.Option(0.2, "--val-split", min=0.0, max=0.9,
                                    help="Validation fraction when the source has no val split."),
    test_split: float = typer.Option(0.2, "--test-split", min=0.0, max=0.9,
                                     help="Test fraction when the source has no partitions."),
    seed: int = typer.Option(0, "--seed"),
    patience: int | None = typer.Option(None, "--patience", min=1,
                                        help="Stop after N epochs without a lower val loss."),
    task: str | None = typer.Option(None, "--task", help="CSV: use the rows of this task."),
    image_dir: Path | None = typer.Option(None, "--image-dir", help="CSV: folder the paths are "
                                          "relative to [default: the CSV's folder]."),
    path_column: str = typer.Option("filename", "--path-column"),
    label_column: str = typer.Option("semantic_label", "--label-column"),
    numeric_column: str = typer.Option("numeric_label", "--numeric-label-column"),
    partition_column: str = typer.Option("partition", "--partition-column"),
    class_weights: str | None = typer.Option(None, "--class-weights",
                                             help="auto (inverse frequency), one number per "
                                             "class (1,20) or by name (dogs=20)"),
    sampler: str = typer.Option("none", "--sampler", help="none|balanced (oversample minority)"),
    positive_class: str | None = typer.Option(None, "--positive-class",
                                              help="Binary: class for precision/recall/F1."),
    augment: str | None = typer.Option(None, "--augment",
                                       help='Online augmentation, e.g. "hflip,rotate=20,crop=4".'),
    pretrained: bool = typer.Option(False, "--pretrained", help="Start from ImageNet weights."),
    weights_file: Path | None = typer.Option(None, "--weights-file",
                                             help="Local file with pretrained weights."),
    freeze: str = typer.Option("none", "--freeze", help="none|all|N (first N conv layers/stages)"),
    backbone_lr_mult: float = typer.Option(0.1, "--backbone-lr-mult", min=0.0),
    init_from: Path | None = typer.Option(None, "--init-from",
                                          help="Start from one of our checkpoints (transfer)."),
    clip_grad: float | None = typer.Option(None, "--clip-grad", min=0.0),
    device: str = typer.Option("auto", "--device", help="auto|cpu|cuda|mps"),
    precision: str = typer.Option("auto", "--precision",
                                  help="auto (bf16 where the CPU/GPU has it natively)|32|bf16|"
                                       "16-mixed"),
    channels_last: bool | None = typer.Option(None, "--channels-last/--no-channels-last",
                                              help="memory layout (default: decide per "
                                                   "device and model)"),
    num_threads: int | None = typer.Option(None, "--num-threads", min=1,
                                           help="CPU threads [default: every core]."),
    deterministic: bool = typer.Option(False, "--deterministic",
                                       help="Bit-reproducible (slower) algorithms."),
    log_every: int = typer.Option(0, "--log-every", min=0,
                                  help="Also log running train metrics every N steps."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable images."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Run folder [default: runs/<name>]"),
    name: str | None = typer.Option(None, "--name", help="Run name under runs/."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing run folder."),
    no_report: bool = typer.Option(False, "--no-report", help="Skip report.html."),
) -> None:
    """Train a classifier and write its run folder (checkpoints, metrics, plots, report)."""
    from cnnlab.train.run import run_training

    check_channels(channels)
    args = parse_model_args(model_arg)
    cfg = TrainConfig(
        data=str(path) if path is not None else None, format=format, model=model,
        model_args=args, epochs=epochs or 10, batch_size=batch_size, lr=lr,
        optimizer=optimizer.lower(), momentum=momentum, weight_decay=weight_decay,
        schedule=schedule, image_size=image_size, channels=channels, resize=resize,
        val_split=val_split, test_split=test_split, seed=seed, patience=patience, task=task,
        image_dir=str(image_dir) if image_dir else None, path_column=path_column,
        label_column=label_column, numeric_column=numeric_column,
        partition_column=partition_column, class_weights=_class_weights(class_weights),
        sampler=sampler, positive_class=positive_class, augment=augment, pretrained=pretrained,
        weights_file=str(weights_file) if weights_file else None, freeze=freeze,
        backbone_lr_mult=backbone_lr_mult, init_from=str(init_from) if init_from else None,
        clip_grad=clip_grad, device=device, precision=precision, channels_last=channels_last,
        deterministic=deterministic, num_threads=num_threads, log_every=log_every,
        skip_bad=skip_bad,
        out=str(out) if out else None, name=name, report=not no_report)
    _validate(cfg)
    run_training(cfg, resume=resume, force=force, epochs_override=epochs if resume else None)


def _class_weights(text: str | None) -> list[float] | str | None:
    if text is None or text in ("auto", "none") or "=" in text:  # dogs=20: by class name
        return text
    return parse_list(text, float)


def _validate(cfg: TrainConfig) -> None:
    from cnnlab.config import OPTIMIZERS, SCHEDULES
    from cnnlab.data.decode import RESIZE_MODES

    if cfg.optimizer not in OPTIMIZERS:
        raise CnnlabError(f"--optimizer {cfg.optimizer!r}: choose {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise CnnlabError(f"--schedule {cfg.schedule!r}: choose {', '.join(SCHEDULES)}")
    if cfg.resize not in RESIZE_MODES:
        raise CnnlabError(f"--resize {cfg.resize!r}: choose {', '.join(RESIZE_MODES)}")
    if cfg.sampler not in ("none", "balanced"):
        raise CnnlabError(f"--sampler {cfg.sampler!r}: choose none or balanced")
    if cfg.val_split + cfg.test_split >= 0.95:
        raise CnnlabError("--val-split plus --test-split leave too little training data")


def _predictor(weights: Path, device: str = "cpu", precision: str = "32"):  # noqa: ANN202
    from cnnlab.api import load

    return load(weights, device, precision)


DEVICE_OPT = typer.Option("cpu", "--device", help="auto|cpu|cuda|mps")
PRECISION_OPT = typer.Option("32", "--precision", help="32|auto|bf16|16-mixed (autocast)")


@app.command()
def evaluate(
    weights: Path = typer.Option(..., "--weights", "-w", help="Checkpoint (best.pt / last.pt)."),
    path: Path | None = typer.Argument(None, help="Data [default: the data it was trained on]."),
    split: str | None = typer.Option(None, "--split", help="train|val|test, a list like "
                                     "train,val,test, or all (one row per split) [default: "
                                     "test, or all of an unpartitioned PATH]"),
    format: str = typer.Option("auto", "--format"),
    positive_class: str | None = typer.Option(None, "--positive-class"),
    as_json: bool = typer.Option(False, "--json", help="Print metrics as JSON on stdout."),
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
) -> None:
    """Measure a trained model: accuracy, per-class metrics, AUROC, confusion matrix."""
    model = _predictor(weights, device, precision)
    metrics = {name: model.evaluate(data, positive_class)
               for data, name in model.splits_for(path, split, format)}
    if as_json:
        print(json.dumps(metrics, indent=2))
        return
    print_metrics(metrics, model.classes)


def print_metrics(metrics: dict, classes: list[str]) -> None:
    """Rich tables of split metrics and per-class rows."""
    t = Table(title="metrics")
    for col in ("split", "n", "accuracy", "loss", "precision", "recall", "f1", "auroc"):
        t.add_column(col, justify="right")
    for name, m in metrics.items():
        if not isinstance(m, dict) or "accuracy" not in m:
            continue
        t.add_row(name, str(m["n"]), *(cell(m.get(k)) for k in ("accuracy", "loss", "precision",
                                                              "recall", "f1", "auroc")))
    console.print(t)
    for name, m in metrics.items():
        if not isinstance(m, dict) or "per_class" not in m:
            continue
        pc = Table(title=f"{name}: per class")
        for col in ("class", "support", "accuracy", "precision", "recall", "f1"):
            pc.add_column(col, justify="right")
        for c in classes:
            r = m["per_class"][c]
            pc.add_row(c, str(r["support"]), cell(r["accuracy"]), cell(r["precision"]),
                       cell(r["recall"]), cell(r["f1"]))
        console.print(pc)


@app.command()
def predict(
    weights: Path = typer.Option(..., "--weights", "-w", help="Checkpoint, or an exported .onnx."),
    path: Path | None = typer.Argument(None, help="Images to classify [default: training data]."),
    split: str | None = typer.Option(None, "--split", help="train|val|test|all"),
    format: str = typer.Option("auto", "--format"),
    output: Path = typer.Option(Path("predictions.csv"), "--output", "--predictionsFile",
                                help="CSV to write."),
    device: str = DEVICE_OPT,
    precision: str = PRECISION_OPT,
) -> None:
    """Write predictions.csv: id, label, class and one probability column per class."""
    model = _predictor(weights, device, precision)
    data, name = model.split_of(path, split, format)
    rows = model.write_predictions(data, output)
    console.print(f"wrote {len(rows)} predictions ({name}) to {output}")


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
    console.print(t)
