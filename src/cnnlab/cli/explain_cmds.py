"""explain gradcam|failures|robustness and report: look inside a trained model."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from cnnlab.cli.app import app, cell
from cnnlab.cli.options import MODEL_CODE_OPT, TRUST_CODE_OPT, with_settings
from cnnlab.console import console
from cnnlab.console import out as stdout
from cnnlab.errors import CnnlabError, DataError

if TYPE_CHECKING:
    import torch

    from cnnlab.evaluate.predictor import Predictor

explain_app = typer.Typer(help="Explain a trained model: Grad-CAM, failure cases, robustness.",
                          no_args_is_help=True)
app.add_typer(explain_app, name="explain")

WEIGHTS = typer.Option(..., "--weights", "-w", metavar="CKPT|RUN",
                       help="Checkpoint (best.pt) or a run folder.")
PATH = typer.Argument(None, help="Images [default: the data it was trained on].",
                      show_default=False)
SPLIT = typer.Option(None, "--split", metavar="SPLIT",
                     help="train|val|test|all [default: test, or all of an unpartitioned PATH]")
CLASS = typer.Option(None, "--class", metavar="CLASS", help="Only images of this true class.")
SEED = typer.Option(0, "--seed", help="Seed of the random picks and the noise.")


def _load(weights: Path, path: Path | None, split: str | None, data_settings: dict | None,
          code: tuple[str | None, bool] = (None, False)):  # noqa: ANN202
    from cnnlab.api import load

    model = load(weights, model=code[0], trust_code=code[1])
    data, name = model.split_of(path, split, **(data_settings or {}))
    if len(data) == 0:
        raise DataError(f"{path or 'the data'}: no images in the {name} split")
    return model, data, name


def _only_class(model, data, cls: str | None):  # noqa: ANN001, ANN202
    import numpy as np

    from cnnlab.evaluate.gradcam import class_index

    ci = class_index(model.classes, cls)
    if ci is None:
        return data
    keep = np.flatnonzero(data.labels.numpy() == ci)
    if len(keep) == 0:
        raise DataError(f"no labeled images of class {cls!r} in the data")
    return data.subset(keep)


def _layers_of(predictor: Predictor, weights: Path) -> torch.nn.Module:
    """The PyTorch network Grad-CAM hooks into; an exported ONNX model has none."""
    if predictor.module is None:
        raise CnnlabError(f"{weights}: Grad-CAM needs the PyTorch checkpoint (the run folder "
                          "or its best.pt); an exported ONNX model has no layers to look into")
    return predictor.module


@explain_app.command("gradcam")
@with_settings("data", mode="saved")
def gradcam_cmd(
    weights: Path = WEIGHTS, path: Path | None = PATH, split: str | None = SPLIT,
    n: int = typer.Option(8, "--n", min=1, max=64, help="Number of images."),
    cls: str | None = typer.Option(None, "--class", metavar="CLASS",
                                   help="Explain this class's score on images of this class "
                                   "[default: the predicted class]."),
    layer: str | None = typer.Option(None, "--layer", metavar="NAME",
                                     help="Module name to explain [default: the last "
                                     "convolution]; see --list-layers."),
    list_layers: bool = typer.Option(False, "--list-layers", help="Print the conv layers."),
    out: Path = typer.Option(Path("gradcam.png"), "--out", "-o", metavar="PNG",
                             help="PNG to write."),
    seed: int = SEED, model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT, settings: dict | None = None,
) -> None:
    """Grad-CAM heatmaps over images, one PNG grid with true and predicted labels."""
    from cnnlab.api import load
    from cnnlab.evaluate.gradcam import conv_layers
    from cnnlab.report.explain_figures import gradcam_figure

    if list_layers:
        convs = conv_layers(_layers_of(load(weights, model=model_code, trust_code=trust_code),
                                       weights))
        if not convs:
            raise CnnlabError(f"{weights}: the model has no convolution layers")
        for name, mod in convs:
            print(f"{name}\t{mod}")
        return
    model, data, name = _load(weights, path, split, settings, (model_code, trust_code))
    _layers_of(model, weights)
    png, res, idx = gradcam_figure(model, data, out, n, cls, layer, seed)
    console.print(f"wrote {png} ({len(idx)} {name} images, layer {res.layer})")


@explain_app.command("failures")
@with_settings("data", mode="saved")
def failures_cmd(
    weights: Path = WEIGHTS, path: Path | None = PATH, split: str | None = SPLIT,
    n: int = typer.Option(10, "--n", min=1, max=50, help="Images per group."),
    cls: str | None = CLASS,
    out: Path = typer.Option(Path("failures.png"), "--out", "-o", metavar="PNG",
                             help="PNG to write; the table goes next to it as .csv."),
    seed: int = SEED, model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT, settings: dict | None = None,
) -> None:
    """n correctly and n wrongly classified images, and the top-loss images (PNG + CSV)."""
    from cnnlab.evaluate.failures import analyze
    from cnnlab.evaluate.gradcam import class_index
    from cnnlab.io import write_csv
    from cnnlab.report.explain_figures import failures_figure

    model, data, name = _load(weights, path, split, settings, (model_code, trust_code))
    f = analyze(model, data, n, seed, class_index(model.classes, cls))
    png = failures_figure(f, data, model.classes, out, f"Failure modes ({name} split)")
    rows = f.rows(data.ids, model.classes)
    table_path = Path(out).with_suffix(".csv")
    write_csv(table_path, rows)
    labeled = f.labels >= 0
    wrong = int((f.preds != f.labels)[labeled].sum())
    t = Table(title=f"{wrong} of {int(labeled.sum())} {name} images misclassified; "
                    "highest loss first")
    for col in ("id", "true", "pred", "p(true)", "p(pred)", "loss"):
        t.add_column(col, justify="right" if col.startswith(("p", "loss")) else "left")
    for r in rows:
        if r["kind"] == "top_loss":
            t.add_row(str(r["id"]), r["true"], r["pred"], cell(r["p_true"]), cell(r["p_pred"]),
                      cell(r["loss"]))
    stdout.print(t)
    console.print(f"wrote {png} and {table_path}")


@explain_app.command("robustness")
@with_settings("data", mode="saved")
def robustness_cmd(
    weights: Path = WEIGHTS, path: Path | None = PATH, split: str | None = SPLIT,
    n: int = typer.Option(10, "--n", min=1, max=30, help="Example images in the PNG."),
    cls: str | None = CLASS,
    max_items: int | None = typer.Option(None, "--max-items", min=1,
                                         help="Evaluate on a seeded sample of this many images."),
    out: Path = typer.Option(Path("robustness.png"), "--out", "-o", metavar="PNG",
                             help="PNG to write; the table goes next to it as .csv."),
    seed: int = SEED, model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT, settings: dict | None = None,
) -> None:
    """Accuracy under Gaussian noise (std = range/10 and others), flips and small rotations."""
    from cnnlab.evaluate.robustness import NOISE_DEFINITION, robustness_table
    from cnnlab.io import write_csv
    from cnnlab.report.explain_figures import examples_figure

    model, data, name = _load(weights, path, split, settings, (model_code, trust_code))
    data = _only_class(model, data, cls)
    rows = robustness_table(model, data, seed=seed, max_items=max_items)
    png = examples_figure(model, data, out, n, seed,
                          title=f"Perturbed {name} images with predictions")
    table_path = Path(out).with_suffix(".csv")
    write_csv(table_path, rows)
    t = Table(title=f"robustness on {rows[0]['n']} {name} images")
    for col in ("perturbation", "accuracy", "change", "unchanged"):
        t.add_column(col, justify="left" if col == "perturbation" else "right")
    for r in rows:
        t.add_row(r["perturbation"], cell(r["accuracy"]), f"{r['change']:+.4f}",
                  cell(r["unchanged"]))
    stdout.print(t)
    console.print(f"{NOISE_DEFINITION.replace('SEED', str(seed))} (CS 475 uses F = 0.1); "
                  "rotate D: D degrees, black corners; unchanged: share of predictions equal "
                  "to the clean ones", highlight=False)
    console.print(f"wrote {png} and {table_path}")


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="A run folder (with config.yaml and best.pt)."),
    model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT,
) -> None:
    """(Re)build RUN_DIR/report.html: one self-contained page, readable offline."""
    from cnnlab.report.html import build_report

    if not run_dir.is_dir():
        raise CnnlabError(f"{run_dir}: no such run folder")
    out = build_report(run_dir, model=model_code, trust_code=trust_code)
    console.print(f"wrote {out}")
