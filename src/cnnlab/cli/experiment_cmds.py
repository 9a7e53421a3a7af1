"""sweep, cv, seeds, compare and lr-find: experiments over the same training code."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab.cli.app import app, check_channels, parse_list, parse_model_args, parse_value
from cnnlab.config import OPTIMIZERS, TrainConfig
from cnnlab.errors import CnnlabError

DATA_HELP = ("Image folder, CSV index, .npy/.npz, CIFAR folder or IDX file "
             "(default: built-in digits).")
RERUN = "Re-running the same command skips finished members and resumes an interrupted one."


def _path() -> Path | None:
    return typer.Argument(None, help=DATA_HELP, show_default=False)


def _opt(default: object, *names: str, **kw: object) -> object:
    return typer.Option(default, *names, **kw)


def _base(path: Path | None, **kw: object) -> TrainConfig:
    """A TrainConfig from the options every experiment shares."""
    from cnnlab.cli.train_cmds import _class_weights, _validate

    channels = kw.get("channels")
    check_channels(channels)
    cfg = TrainConfig(
        data=str(path) if path is not None else None, format=kw["format"], model=kw["model"],
        model_args=parse_model_args(kw["model_arg"]), epochs=kw["epochs"],
        batch_size=kw.get("batch_size") or 64, lr=kw.get("lr"),
        optimizer=(kw.get("optimizer") or "adamw").lower(), momentum=kw["momentum"],
        weight_decay=kw["weight_decay"], schedule=kw["schedule"], image_size=kw["image_size"],
        channels=channels, val_split=kw["val_split"], test_split=kw["test_split"],
        seed=kw["seed"], patience=kw["patience"], augment=kw["augment"],
        class_weights=_class_weights(kw["class_weights"]), device=kw["device"],
        precision=kw["precision"], num_threads=kw["num_threads"], report=kw["report"],
        extra={} if kw["member_plots"] else {"plots": False})
    _validate(cfg)
    return cfg


# The options every training experiment takes (typer needs them spelled out per command).
FORMAT = _opt("auto", "--format", help="auto|folder|csv|npy|cifar|idx|digits")
MODEL_ARG = _opt([], "--model-arg", help="Model argument KEY=VALUE (repeatable).")
EPOCHS = _opt(10, "--epochs", "-e", min=1)
MOMENTUM = _opt(0.9, "--momentum", min=0.0, help="SGD momentum.")
WEIGHT_DECAY = _opt(0.0, "--weight-decay", min=0.0)
SCHEDULE = _opt("cosine", "--schedule", help="cosine|none")
IMAGE_SIZE = _opt(None, "--image-size", min=1, help="Resize images to N x N.")
CHANNELS = _opt(None, "--channels", help="1 or 3 [default: the data's]")
VAL_SPLIT = _opt(0.2, "--val-split", min=0.0, max=0.9,
                 help="Validation fraction when the source has no val split.")
TEST_SPLIT = _opt(0.2, "--test-split", min=0.0, max=0.9,
                  help="Test fraction when the source has no partitions.")
SEED = _opt(0, "--seed", help="Seed of the data split and (except for `seeds`) of training.")
PATIENCE = _opt(None, "--patience", min=1, help="Early stopping patience (epochs).")
AUGMENT = _opt(None, "--augment", help='Online augmentation, e.g. "hflip,rotate=20".')
CLASS_WEIGHTS = _opt(None, "--class-weights", help="auto or e.g. 1,20")
DEVICE = _opt("auto", "--device", help="auto|cpu|cuda|mps")
PRECISION = _opt("32", "--precision", help="32|bf16|16-mixed")
THREADS = _opt(None, "--num-threads", min=1, help="CPU threads [default: all cores].")
REPORT = _opt(False, "--report/--no-report", help="Write report.html in every member's run.")
MEMBER_PLOTS = _opt(True, "--member-plots/--no-member-plots",
                    help="Write curves and confusion matrix PNGs in every member's run.")
FORCE = _opt(False, "--force", help="Delete the experiment's members and start again.")


def _common(path, format, model, model_arg, epochs, batch_size, lr, optimizer, momentum,  # noqa: ANN001, ANN202, E501
            weight_decay, schedule, image_size, channels, val_split, test_split, seed,
            patience, augment, class_weights, device, precision, num_threads, report,
            member_plots):
    return _base(path, format=format, model=model, model_arg=model_arg, epochs=epochs,
                 batch_size=batch_size, lr=lr, optimizer=optimizer, momentum=momentum,
                 weight_decay=weight_decay, schedule=schedule, image_size=image_size,
                 channels=channels, val_split=val_split, test_split=test_split, seed=seed,
                 patience=patience, augment=augment, class_weights=class_weights,
                 device=device, precision=precision, num_threads=num_threads, report=report,
                 member_plots=member_plots)


def _grid_option(items: list[str]) -> dict[str, list]:

    grid = {}
    for item in items:
        key, sep, vals = item.partition("=")
        if not sep or not vals.strip():
            raise CnnlabError(f"--grid {item!r}: expected KEY=V1,V2 (e.g. model_args.width=8,16)")
        grid[key.strip()] = [parse_value(v.strip()) for v in vals.split(",") if v.strip()]
    return grid


@app.command(epilog=RERUN)
def sweep(
    path: Path | None = _path(),
    lr: str | None = _opt(None, "--lr", help="Learning rates, e.g. 1e-4,1e-3,1e-2."),
    optimizer: str | None = _opt(None, "--optimizer",
                                 help="Optimizers, e.g. sgd,adam,rmsprop (also adamw)."),
    batch_size: str | None = _opt(None, "--batch-size", "-b", help="Batch sizes, e.g. 32,128."),
    weight_decay: str = _opt("0", "--weight-decay", help="Weight decay(s), e.g. 0,1e-4."),
    model: str = _opt("cnn", "--model", "-m", help="Architecture, or several: cnn,mlp."),
    grid: list[str] = _opt([], "--grid", help="Any other setting KEY=V1,V2 (repeatable), e.g. "
                           "model_args.width=8,16 or momentum=0.5,0.9."),
    select: str = _opt("val_acc", "--select", help="Pick the best by val_acc (ties: lower val "
                       "loss) or val_loss."),
    prune: bool = _opt(False, "--prune", help="Delete the checkpoints of all but the best member."),
    out: Path | None = _opt(None, "--out", "-o",
                            help="Experiment folder [default: runs/sweep-<data>-<model>]"),
    force: bool = FORCE, format: str = FORMAT, model_arg: list[str] = MODEL_ARG,
    epochs: int = EPOCHS, momentum: float = MOMENTUM,
    schedule: str = SCHEDULE, image_size: int | None = IMAGE_SIZE,
    channels: int | None = CHANNELS, val_split: float = VAL_SPLIT,
    test_split: float = TEST_SPLIT, seed: int = SEED, patience: int | None = PATIENCE,
    augment: str | None = AUGMENT, class_weights: str | None = CLASS_WEIGHTS,
    device: str = DEVICE, precision: str = PRECISION, num_threads: int | None = THREADS,
    report: bool = REPORT, member_plots: bool = MEMBER_PLOTS,
) -> None:
    """Grid search over learning rate, optimizer, batch size, model, ... ; the best is marked."""
    from cnnlab.experiments.sweep import run_sweep

    grid_values: dict[str, list] = {}
    if lr:
        grid_values["lr"] = parse_list(lr, float)
    if optimizer:
        grid_values["optimizer"] = [o.lower() for o in parse_list(optimizer, str)]
        bad = [o for o in grid_values["optimizer"] if o not in OPTIMIZERS]
        if bad:
            raise CnnlabError(f"--optimizer {bad[0]!r}: choose {', '.join(OPTIMIZERS)}")
    if batch_size:
        grid_values["batch_size"] = parse_list(batch_size, int)
    decays = parse_list(weight_decay, float) or [0.0]
    if len(decays) > 1:
        grid_values["weight_decay"] = decays
    models = parse_list(model, str) or ["cnn"]
    if len(models) > 1:
        grid_values["model"] = models
    grid_values.update(_grid_option(grid))
    if not grid_values:
        raise CnnlabError("sweep: nothing to vary; give e.g. --lr 1e-4,1e-3,1e-2")
    base = _common(path, format, models[0], model_arg, epochs, None, None, None, momentum,
                   decays[0], schedule, image_size, channels, val_split, test_split, seed,
                   patience, augment, class_weights, device, precision, num_threads, report,
                   member_plots)
    run_sweep(base, grid_values, out=out, select=select, prune=prune, force=force)


@app.command(epilog=RERUN)
def cv(
    path: Path | None = _path(),
    folds: int = _opt(5, "--folds", "-k", min=2, help="Number of folds."),
    inner_val: float = _opt(0.1, "--inner-val", min=0.0, max=0.5,
                            help="Fraction of each fold's training part kept for picking the best "
                                 "epoch (0: none, the last best train-loss epoch is used)."),
    out: Path | None = _opt(None, "--out", "-o",
                            help="Experiment folder [default: runs/cv-<data>-<model>]"),
    force: bool = FORCE, format: str = FORMAT,
    model: str = _opt("cnn", "--model", "-m"), model_arg: list[str] = MODEL_ARG,
    epochs: int = EPOCHS, batch_size: int = _opt(64, "--batch-size", "-b", min=1),
    lr: float | None = _opt(None, "--lr", min=0.0), optimizer: str = _opt("adamw", "--optimizer"),
    momentum: float = MOMENTUM, weight_decay: float = WEIGHT_DECAY, schedule: str = SCHEDULE,
    image_size: int | None = IMAGE_SIZE, channels: int | None = CHANNELS,
    val_split: float = VAL_SPLIT, test_split: float = TEST_SPLIT, seed: int = SEED,
    patience: int | None = PATIENCE, augment: str | None = AUGMENT,
    class_weights: str | None = CLASS_WEIGHTS, device: str = DEVICE,
    precision: str = PRECISION, num_threads: int | None = THREADS, report: bool = REPORT,
    member_plots: bool = MEMBER_PLOTS,
) -> None:
    """Stratified k-fold cross-validation on the training data (train + val; test untouched)."""
    from cnnlab.experiments.cv import run_cv

    base = _common(path, format, model, model_arg, epochs, batch_size, lr, optimizer, momentum,
                   weight_decay, schedule, image_size, channels, val_split, test_split, seed,
                   patience, augment, class_weights, device, precision, num_threads, report,
                   member_plots)
    run_cv(base, folds, out=out, val_fraction=inner_val, force=force)


@app.command(epilog=RERUN)
def seeds(
    path: Path | None = _path(),
    n: int = _opt(10, "--n", "-n", min=1, help="Number of seeds (seed, seed+1, ...)."),
    seed_list: str | None = _opt(None, "--seeds", help="Explicit seeds, e.g. 0,1,2,7."),
    out: Path | None = _opt(None, "--out", "-o",
                            help="Experiment folder [default: runs/seeds-<data>-<model>]"),
    force: bool = FORCE, format: str = FORMAT,
    model: str = _opt("cnn", "--model", "-m"), model_arg: list[str] = MODEL_ARG,
    epochs: int = EPOCHS, batch_size: int = _opt(64, "--batch-size", "-b", min=1),
    lr: float | None = _opt(None, "--lr", min=0.0), optimizer: str = _opt("adamw", "--optimizer"),
    momentum: float = MOMENTUM, weight_decay: float = WEIGHT_DECAY, schedule: str = SCHEDULE,
    image_size: int | None = IMAGE_SIZE, channels: int | None = CHANNELS,
    val_split: float = VAL_SPLIT, test_split: float = TEST_SPLIT, seed: int = SEED,
    patience: int | None = PATIENCE, augment: str | None = AUGMENT,
    class_weights: str | None = CLASS_WEIGHTS, device: str = DEVICE,
    precision: str = PRECISION, num_threads: int | None = THREADS, report: bool = REPORT,
    member_plots: bool = MEMBER_PLOTS,
) -> None:
    """The same training with n seeds on one data split: mean ± std, min and max."""
    from cnnlab.experiments.seeds import run_seeds

    base = _common(path, format, model, model_arg, epochs, batch_size, lr, optimizer, momentum,
                   weight_decay, schedule, image_size, channels, val_split, test_split, seed,
                   patience, augment, class_weights, device, precision, num_threads, report,
                   member_plots)
    run_seeds(base, n, seeds=parse_list(seed_list, int), out=out, force=force)


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders (or experiment folders)."),
    out: Path = _opt(Path("runs/compare"), "--out", "-o", help="Folder for the summary."),
) -> None:
    """Side by side: settings that differ, final metrics and overlaid validation curves."""
    from cnnlab.experiments.compare import compare_runs

    compare_runs(runs, out=out)


@app.command("lr-find")
def lr_find_cmd(
    path: Path | None = _path(),
    start_lr: float = _opt(1e-7, "--start-lr", min=0.0),
    end_lr: float = _opt(10.0, "--end-lr", min=0.0),
    steps: int = _opt(100, "--steps", min=5, help="Batches to train (one learning rate each)."),
    out: Path | None = _opt(None, "--out", "-o",
                            help="Folder for the plot [default: runs/lr-find-<data>-<model>]"),
    format: str = FORMAT, model: str = _opt("cnn", "--model", "-m"),
    model_arg: list[str] = MODEL_ARG, batch_size: int = _opt(64, "--batch-size", "-b", min=1),
    optimizer: str = _opt("adamw", "--optimizer"), momentum: float = MOMENTUM,
    weight_decay: float = WEIGHT_DECAY, image_size: int | None = IMAGE_SIZE,
    channels: int | None = CHANNELS, val_split: float = VAL_SPLIT,
    test_split: float = TEST_SPLIT, seed: int = SEED, augment: str | None = AUGMENT,
    device: str = DEVICE, precision: str = PRECISION, num_threads: int | None = THREADS,
) -> None:
    """Loss against an exponentially growing learning rate, with a suggested --lr."""
    from cnnlab.experiments.lrfind import lr_find

    base = _common(path, format, model, model_arg, 1, batch_size, None, optimizer, momentum,
                   weight_decay, "none", image_size, channels, val_split, test_split, seed,
                   None, augment, None, device, precision, num_threads, False, False)
    lr_find(base, out=out, start_lr=start_lr, end_lr=end_lr, steps=steps)
