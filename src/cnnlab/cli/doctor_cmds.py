"""doctor: check a data set for leaks, duplicates, label errors, outliers and shift."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab.cli.app import app
from cnnlab.cli.options import DATA_ARG_HELP, MODEL_CODE_OPT, TRUST_CODE_OPT, with_settings
from cnnlab.console import console


@app.command(no_args_is_help=False)
@with_settings("data")
def doctor(
    path: Path | None = typer.Argument(None, help=DATA_ARG_HELP, show_default=False),
    out: Path = typer.Option(Path("doctor"), "--out", "-o", metavar="DIR",
                             help="Folder for doctor.html and doctor.json."),
    distance: int = typer.Option(6, "--distance", min=0, max=32, metavar="BITS",
                                 help="Near duplicates: largest pHash Hamming distance (bits "
                                      "of 64); 0 = same hash."),
    min_similarity: float = typer.Option(0.99, "--min-similarity", metavar="R",
                                         help="Near duplicates must also correlate this much "
                                              "(32x32 grayscale); 1 = exact copies only."),
    folds: int = typer.Option(5, "--folds", min=2, metavar="K",
                              help="Folds for the out-of-sample label check."),
    features: str = typer.Option("auto", "--features", metavar="auto|pixels|backbone",
                                 help="auto (backbone for colour images of 32 px or more, else "
                                      "pixels) | pixels (fast) | backbone (pretrained "
                                      "EfficientNet-Lite0 features; needed for photos)"),
    weights: Path | None = typer.Option(None, "--weights", "-w", metavar="CKPT|RUN",
                                        help="A trained checkpoint: estimate test accuracy "
                                             "with and without the leaked images."),
    fix: bool = typer.Option(False, "--fix", help="Write a cleaned index (leaks removed from "
                                                  "train, suspect labels marked for review)."),
    skip: list[str] = typer.Option([], "--skip", metavar="CHECK",
                                   help="Leave out a check (repeatable): "
                                        "duplicates|labels|outliers|balance|shift."),
    limit: int = typer.Option(50, "--limit", min=1, help="Items shown per section of the "
                                                         "page."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits and the checks."),
    model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT,
    settings: dict | None = None,
) -> None:
    """Check data before training: leaks, duplicates, label errors, outliers, shift."""
    import json

    if weights is not None:  # loaded (and checked) before any data is read
        from cnnlab.api import load

        weights = load(weights, model=model_code, trust_code=trust_code)

    from cnnlab.doctor import run_doctor, summary_line
    from cnnlab.settings import check_values, data_options

    opts = data_options({**check_values(settings or {}), "seed": seed})
    report = run_doctor(path, opts, out=out, distance=distance, min_similarity=min_similarity,
                        folds=folds, feature_kind=features, weights=weights, fix=fix,
                        skip=tuple(skip), limit=limit, seed=opts.seed)
    if as_json:
        print(json.dumps(report["summary"], indent=2))
    else:
        s = report["summary"]
        console.print(summary_line(s), markup=False, highlight=False)
        for f in s["findings"]:
            console.print(f"  - {f}")
        if report.get("fix"):
            console.print(f"cleaned index: {report['fix']['path']} (train on it: "
                          f"{report['fix']['train_command']})")
    console.print(f"wrote {out / 'doctor.html'} and {out / 'doctor.json'} "
                  f"({report['seconds']:.1f} s)")
