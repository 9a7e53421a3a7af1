"""`cnnlab inspect model|conv|data`: parameter accounting, conv arithmetic, data summaries."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cnnlab.cli.app import app
from cnnlab.cli.options import with_settings
from cnnlab.errors import CnnlabError
from cnnlab.settings import SETTINGS, parse_model_args

inspect_app = typer.Typer(help="Look inside a model or a data set before training.",
                          no_args_is_help=True)
app.add_typer(inspect_app, name="inspect")


def _console() -> Console:
    """What the user asked to see goes to stdout (the shared console writes to stderr);
    piped output gets wide tables instead of wrapped formulas."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS"):
        return Console(highlight=False)
    return Console(highlight=False, width=160)


def _shape(s: list[int] | None) -> str:
    return "-" if s is None else "x".join(map(str, s))


@inspect_app.command("model")
def inspect_model_cmd(
    name: str = typer.Argument(..., help="Registered model (see `cnnlab models`)."),
    num_classes: int | None = typer.Option(None, "--num-classes", min=1,
                                           help="Classes [default: 10]."),
    image_size: int | None = typer.Option(None, "--image-size", min=1,
                                          help="Input N x N [default: the model's size]."),
    channels: int | None = typer.Option(None, "--channels", help="1 or 3 [default: 3]."),
    model_arg: list[str] = typer.Option([], "--model-arg", metavar="KEY=VALUE",
                                        help="A model argument (repeatable)."),
    max_size: str | None = typer.Option(None, "--max-size", metavar="SIZE",
                                        help="Fail (exit 1) when the saved weights are larger, "
                                             "e.g. 1MB (10^6 bytes) or 1MiB."),
    as_json: bool = typer.Option(False, "--json", help="Print the same data as JSON."),
) -> None:
    """Per-layer table: output shape, weights, biases and the hand formula; totals and size."""
    from cnnlab.models.inspect import fmt_bytes, fmt_int, inspect_model, parse_size

    console = _console()

    SETTINGS["channels"].check(channels)
    limit = parse_size(max_size) if max_size is not None else None
    s = inspect_model(name, num_classes, image_size, channels, **parse_model_args(model_arg))
    too_big = limit is not None and s.saved_bytes > limit
    if as_json:
        d = s.to_dict()
        if limit is not None:
            d["max_size_bytes"] = limit
            d["within_max_size"] = not too_big
        print(json.dumps(d, indent=2))
    else:
        t = Table(title=f"{name}: input {_shape(s.input_shape)}, {s.num_classes} classes")
        for col, just in (("layer", "left"), ("type", "left"), ("output", "right"),
                          ("weights", "right"), ("biases", "right"), ("formula", "left")):
            t.add_column(col, justify=just, no_wrap=col in ("formula", "output"))  # type: ignore[arg-type]
        for r in s.layers:
            t.add_row(r.name, r.type, _shape(r.output_shape), fmt_int(r.weights),
                      fmt_int(r.biases), r.formula)
        console.print(t)
        weights = sum(r.weights for r in s.layers)
        biases = sum(r.biases for r in s.layers)
        console.print(f"total parameters: {fmt_int(s.total_params)} ({fmt_int(weights)} weights"
                      f" + {fmt_int(biases)} biases"
                      + (f" + {fmt_int(s.total_params - weights - biases)} other" if
                         s.total_params != weights + biases else "") + ")", highlight=False)
        console.print(f"trainable: {fmt_int(s.trainable_params)}; output "
                      f"{_shape(s.output_shape)}", highlight=False)
        console.print(f"saved weights (state_dict, float32): {fmt_bytes(s.saved_bytes)} "
                      f"({fmt_int(s.saved_bytes)} bytes)", highlight=False)
        for note in s.notes:
            console.print(f"note: {note}", highlight=False)
    if too_big:
        print(f"error: {name} saved weights are {fmt_bytes(s.saved_bytes)} "
              f"({fmt_int(s.saved_bytes)} bytes), over --max-size {max_size} "
              f"({fmt_int(limit)} bytes)", file=sys.stderr)
        raise typer.Exit(1)


@inspect_app.command("conv")
def inspect_conv_cmd(
    stack: str | None = typer.Option(None, "--stack", metavar="LAYERS", help="Layers, e.g. "
                                     "'conv:16:5:2:2,pool:2,fc:64' (conv:OUT:K[:STRIDE[:PAD]], "
                                     "pool:K[:S], avgpool:K[:S], fc:OUT)."),
    input_size: int = typer.Option(32, "--input-size", min=1, help="Stack: input width/height."),
    in_channels: int = typer.Option(3, "--channels", min=1, help="Stack: input channels."),
    no_bias: bool = typer.Option(False, "--no-bias", help="Stack: layers without biases."),
    matrix: str | None = typer.Option(None, "--matrix", metavar="ROWS",
                                      help="Input, e.g. '-1 0 1; 2 3 4'."),
    kernel: str | None = typer.Option(None, "--kernel", metavar="ROWS",
                                      help="Kernel, e.g. '2 1; 0 -1'."),
    padding: int = typer.Option(0, "--padding", min=0, help="Zero padding on every side."),
    stride: int = typer.Option(1, "--stride", min=1),
    activation: str = typer.Option("relu", "--activation", metavar="relu|none"),
    pool: str = typer.Option("max", "--pool", metavar="max|avg|none"),
    pool_size: int = typer.Option(2, "--pool-size", min=1),
    pool_stride: int | None = typer.Option(None, "--pool-stride", min=1,
                                           help="[default: the pool size (non-overlapping)]"),
    ceil: bool = typer.Option(False, "--ceil", help="Keep partial pooling windows at the edge."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Conv arithmetic: a stack's output sizes, or a matrix's activation map and pooling."""
    from cnnlab.models import inspect as mi

    console = _console()

    if stack is None and matrix is None:
        raise CnnlabError("give --stack (output sizes of a layer stack) or --matrix with "
                          "--kernel (activation map before and after pooling)")
    out: dict = {}
    if stack is not None:
        rows = mi.stack_shapes(mi.parse_stack(stack), in_channels, input_size,
                               bias=not no_bias)
        out["stack"] = {"input": [in_channels, input_size, input_size],
                        "layers": [vars(r) for r in rows],
                        "total_params": sum(r.params for r in rows)}
        if not as_json:
            t = Table(title=f"input {in_channels}x{input_size}x{input_size}")
            for col in ("layer", "output", "size formula", "parameters"):
                t.add_column(col)
            for r in rows:
                t.add_row(r.layer, _shape(r.output), r.formula, r.param_formula)
            console.print(t)
            console.print(f"total parameters: {mi.fmt_int(out['stack']['total_params'])}",
                          highlight=False)
    if matrix is not None:
        if kernel is None:
            raise CnnlabError("--matrix needs --kernel")
        ex = mi.conv_exercise(mi.parse_matrix(matrix, "--matrix"),
                              mi.parse_matrix(kernel, "--kernel"), padding, stride, activation,
                              pool, pool_size, pool_stride, ceil)
        out["matrix"] = vars(ex)
        if not as_json:
            act = "ReLU(" if activation == "relu" else "("
            print(f"input{' with zero padding ' + str(padding) if padding else ''} "
                  f"({len(ex.padded)}x{len(ex.padded[0])}):")
            print(mi.format_matrix(ex.padded))
            for step in ex.steps:
                print(f"  {step}")
            print(f"activation map {act}conv) ({len(ex.activation)}x{len(ex.activation[0])}):")
            print(mi.format_matrix(ex.activation))
            if ex.pooled is not None:
                ps = pool_stride or pool_size
                print(f"after {pool_size}x{pool_size} {pool} pooling, stride {ps}"
                      f"{', ceil' if ceil else ''} ({len(ex.pooled)}x{len(ex.pooled[0])}):")
                print(mi.format_matrix(ex.pooled))
    if as_json:
        print(json.dumps(out, indent=2))


@inspect_app.command("data")
@with_settings("data")
def inspect_data_cmd(
    path: Path | None = typer.Argument(None, help="Data source [default: built-in digits]."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/val/test split."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="DIR",
                                    help="Folder for class_counts.png, samples.png and "
                                    "summary.json [default: no files]."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    settings: dict | None = None,
) -> None:
    """Class counts per split, mean/std, size range, imbalance and the guessing baselines."""
    from cnnlab.data.inspect import inspect_data, write_figures
    from cnnlab.settings import check_values, data_options

    opts = data_options({**check_values(settings or {}), "seed": seed})
    summary, splits = inspect_data(path, opts)
    if out is not None:
        summary["files"] = write_figures(summary, splits, out)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    _print_data(summary)


def _print_data(s: dict) -> None:
    console = _console()
    console.print(f"{s['name']}: {s['num_images']} images, {len(s['classes'])} classes "
                  f"({s['format']})", highlight=False)
    t = Table()
    t.add_column("class")
    splits = list(s["counts"])
    for sp in splits:
        t.add_column(sp, justify="right")
    t.add_column("total", justify="right")
    unl = s.get("unlabeled_by_split", {})
    sizes = s.get("sizes", {})
    # A split with no labels at all shows "-" per class and "unlabeled N", never a false 0.
    blank = {sp for sp in splits if unl.get(sp) and unl[sp] == sizes.get(sp)}
    for i, c in enumerate(s["classes"]):
        t.add_row(c, *("-" if sp in blank else str(s["counts"][sp][i]) for sp in splits),
                  str(sum(s["counts"][sp][i] for sp in splits)))
    if any(unl.get(sp) for sp in splits if sp not in blank):
        t.add_row("unlabeled", *(str(unl.get(sp, 0)) for sp in splits),
                  str(sum(unl.get(sp, 0) for sp in splits)))
    t.add_row("all", *(f"unlabeled {unl[sp]}" if sp in blank else
                       str(sum(s["counts"][sp]) + unl.get(sp, 0)) for sp in splits),
              str(sum(sum(s["counts"][sp]) + unl.get(sp, 0) for sp in splits)))
    console.print(t)
    if s.get("split_note"):
        console.print(f"splits: {s['split_note']}", highlight=False)
    sz = s["image_size"]
    console.print(f"image size: {sz['description']}", highlight=False)
    console.print("train mean (per channel, 0..1): "
                  + ", ".join(f"{v:.4f}" for v in s["train_mean"])
                  + "; std: " + ", ".join(f"{v:.4f}" for v in s["train_std"]), highlight=False)
    console.print(f"imbalance ratio (largest / smallest class, train): "
                  f"{s['imbalance_ratio']['train']:.2f}; all splits: "
                  f"{s['imbalance_ratio']['all']:.2f}", highlight=False)
    b = s["baselines"]
    console.print(f"baseline accuracy on {b['split']}: random guess {b['random']:.4f} "
                  f"(1/{len(s['classes'])}), majority class ({b['majority_class']}) "
                  f"{b['majority']:.4f}", highlight=False)
    for k, v in s.get("files", {}).items():
        console.print(f"wrote {k}: {v}", highlight=False)
