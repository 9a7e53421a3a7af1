"""doctor: check a data set for leaks, duplicates, label errors, outliers and shift."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path

import typer

from cnnlab.cli.app import app, check_channels
from cnnlab.console import console
from cnnlab.data.load import LoadOptions

DATA_HELP = ("Image folder, CSV index, .npy/.npz, CIFAR folder or IDX file "
             "(default: built-in digits).")


def data_options() -> list[inspect.Parameter]:
    """The data options `train` takes, as typer parameters: the one list to swap for a shared one.

    Each parameter's name is the keyword load_options() reads.
    """
    def opt(name: str, annotation: object, info: object) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                 annotation=annotation)

    return [
        opt("format", str, typer.Option("auto", "--format",
                                        help="auto|folder|csv|npy|cifar|idx|digits")),
        opt("image_size", int | None, typer.Option(None, "--image-size", min=1,
                                                   help="Resize images to N x N [default: the "
                                                        "data's own size for arrays, 64 for "
                                                        "files]")),
        opt("channels", int | None, typer.Option(None, "--channels",
                                                 help="1 or 3 [default: the data's]")),
        opt("resize", str, typer.Option("crop", "--resize",
                                        help="crop (keep aspect, centre crop) | stretch")),
        opt("val_split", float, typer.Option(0.2, "--val-split", min=0.0, max=0.9,
                                             help="Validation fraction when the source has no "
                                                  "val split.")),
        opt("test_split", float, typer.Option(0.2, "--test-split", min=0.0, max=0.9,
                                              help="Test fraction when the source has no "
                                                   "partitions.")),
        opt("seed", int, typer.Option(0, "--seed", help="Seed of the splits and the checks.")),
        opt("task", str | None, typer.Option(None, "--task",
                                             help="CSV: use the rows of this task.")),
        opt("image_dir", Path | None, typer.Option(None, "--image-dir",
                                                   help="CSV: folder the paths are relative to "
                                                        "[default: the CSV's folder].")),
        opt("path_column", str, typer.Option("filename", "--path-column")),
        opt("label_column", str, typer.Option("semantic_label", "--label-column")),
        opt("numeric_column", str, typer.Option("numeric_label", "--numeric-label-column")),
        opt("partition_column", str, typer.Option("partition", "--partition-column")),
        opt("skip_bad", bool, typer.Option(False, "--skip-bad", help="Skip unreadable images.")),
    ]


def load_options(values: dict) -> LoadOptions:
    """LoadOptions from the values of data_options()."""
    from cnnlab.data.decode import RESIZE_MODES
    from cnnlab.data.sources.csvindex import CsvColumns
    from cnnlab.errors import CnnlabError

    check_channels(values["channels"])
    if values["resize"] not in RESIZE_MODES:
        raise CnnlabError(f"--resize {values['resize']!r}: choose {', '.join(RESIZE_MODES)}")
    if values["val_split"] + values["test_split"] >= 0.95:
        raise CnnlabError("--val-split plus --test-split leave too little training data")
    return LoadOptions(format=values["format"], image_size=values["image_size"],
                       channels=values["channels"], resize=values["resize"],
                       val_split=values["val_split"], test_split=values["test_split"],
                       seed=values["seed"], task=values["task"],
                       image_dir=str(values["image_dir"]) if values["image_dir"] else None,
                       columns=CsvColumns(values["path_column"], values["label_column"],
                                          values["numeric_column"], values["partition_column"]),
                       skip_bad=values["skip_bad"])


def with_data_options(func: Callable) -> Callable:
    """Add data_options() to a command; it receives them as one LoadOptions `data_opts`."""
    own = [p for p in inspect.signature(func, eval_str=True).parameters.values()
           if p.name != "data_opts"]
    extra = data_options()
    names = [p.name for p in extra]

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> object:
        values = {n: kwargs.pop(n) for n in names}
        return func(*args, data_opts=load_options(values), **kwargs)

    # Typer reads the parameters from the signature: the command's own, then the data options.
    wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {}
    return wrapper


@app.command(no_args_is_help=False)
@with_data_options
def doctor(
    path: Path | None = typer.Argument(None, help=DATA_HELP, show_default=False),
    out: Path = typer.Option(Path("doctor"), "--out", "-o",
                             help="Folder for doctor.html and doctor.json."),
    distance: int = typer.Option(6, "--distance", min=0, max=32,
                                 help="Near duplicates: largest pHash Hamming distance (bits "
                                      "of 64); 0 = same hash."),
    min_similarity: float = typer.Option(0.99, "--min-similarity",
                                         help="Near duplicates must also correlate this much "
                                              "(32x32 grayscale); 1 = exact copies only."),
    folds: int = typer.Option(5, "--folds", min=2, help="Folds for the out-of-sample label "
                                                        "check."),
    features: str = typer.Option("pixels", "--features",
                                 help="pixels (fast) | backbone (pretrained EfficientNet-Lite0 "
                                      "features; better for photos)"),
    weights: Path | None = typer.Option(None, "--weights", "-w",
                                        help="A trained checkpoint: estimate test accuracy "
                                             "with and without the leaked images."),
    fix: bool = typer.Option(False, "--fix", help="Write a cleaned index (leaks removed from "
                                                  "train, suspect labels marked for review)."),
    skip: list[str] = typer.Option([], "--skip", help="Leave out a check (repeatable): "
                                                      "duplicates|labels|outliers|shift."),
    limit: int = typer.Option(50, "--limit", min=1, help="Items shown per section of the "
                                                         "page."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    data_opts: LoadOptions | None = None,
) -> None:
    """Check data before training: leaks, duplicates, label errors, outliers, shift."""
    import json

    from cnnlab.doctor import run_doctor

    opts = data_opts or LoadOptions()
    report = run_doctor(path, opts, out=out, distance=distance, min_similarity=min_similarity,
                        folds=folds, feature_kind=features, weights=weights, fix=fix,
                        skip=tuple(skip), limit=limit, seed=opts.seed)
    if as_json:
        print(json.dumps(report["summary"], indent=2))
    else:
        s = report["summary"]
        console.print(f"[bold]doctor[/bold]: {s['leaks']} leaked held-out images, "
                      f"{s['duplicate_groups']} duplicate groups, {s['label_issues']} likely "
                      f"label errors, {s['outliers']} outliers")
        for f in s["findings"]:
            console.print(f"  - {f}")
        if report.get("fix"):
            console.print(f"cleaned index: {report['fix']['path']} (train on it: "
                          f"{report['fix']['train_command']})")
    console.print(f"wrote {out / 'doctor.html'} and {out / 'doctor.json'} "
                  f"({report['seconds']:.1f} s)")
