"""augment (offline augmented copies + CSV index) and transfer (source -> target comparison)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from cnnlab.cli.app import app, cell, parse_list
from cnnlab.cli.options import with_settings
from cnnlab.console import console
from cnnlab.console import out as stdout


@app.command()
@with_settings("data", skip=("image_size", "channels", "resize", "crop_size", "value_range",
                             "skip_bad", "split_seed", "layout"))
def augment(
    path: Path = typer.Argument(..., help="Image folder, CSV index or array source."),
    ops: str = typer.Option(..., "--ops", metavar="OPS",
                            help="Augmentations applied in order, e.g. rotate=20,grayscale (hflip "
                            "vflip rotate grayscale jitter rrc crop blur noise)."),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR",
                             help="Folder for images/ and the CSV index."),
    copies: int = typer.Option(1, "--copies", min=0, help="Augmented copies per training image."),
    keep_original: bool = typer.Option(True, "--keep-original/--discard-original",
                                       help="Keep the original training images too."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and the augmentations."),
    force: bool = typer.Option(False, "--force", help="Replace earlier output in --out."),
    settings: dict | None = None,
) -> None:
    """Write augmented copies of the training images and a CSV index `cnnlab train` reads."""
    from cnnlab.data.offline_augment import write_augmented
    from cnnlab.settings import data_options

    # The data options are the settings' own (defaults, checks, CSV columns), as in train.
    opts = data_options(settings or {})
    res = write_augmented(path, out, ops, copies, keep_original, opts.format, opts.task,
                          opts.image_dir, columns=opts.columns, seed=seed,
                          val_split=opts.val_split, test_split=opts.test_split, force=force)
    parts = ", ".join(f"{k or 'unpartitioned'} {v}" for k, v in sorted(res.counts.items()))
    console.print(f"wrote {res.augmented} augmented images; index {res.index} ({res.rows} rows: "
                  f"{parts})")
    console.print(f"train on it with: cnnlab train {res.index}")


@app.command()
@with_settings("data", "model", "optimization", "augmentation", "hardware", "tracking",
               skip=("freeze", "init_from", "pretrained", "weights_file"), config=True)
def transfer(
    source: Path = typer.Argument(..., help="Source checkpoint (e.g. runs/source/best.pt)."),
    path: Path = typer.Argument(..., help="Target data."),
    freeze_levels: str = typer.Option("0,1,2,3", "--freeze-levels", metavar="LIST",
                                      help="Numbers of leading layers to freeze, one run each."),
    scratch: bool = typer.Option(True, "--scratch/--no-scratch",
                                 help="Also train from random weights for comparison."),
    out: Path = typer.Option(Path("runs/transfer"), "--out", "-o", metavar="DIR"),
    settings: dict | None = None,
) -> None:
    """Source -> target transfer with 0..N frozen layers: a table of accuracy and AUROC.

    The seed's own recipe (EECS 445 Project 2) is --epochs 20 --patience 5 --optimizer adam
    --batch-size 32 --backbone-lr-mult 1; the defaults are `cnnlab train`'s.
    """
    from cnnlab.checkpoint import load_checkpoint
    from cnnlab.experiments.transfer import SPLITS, compare_transfer
    from cnnlab.models.registry import spec_named_by_file
    from cnnlab.settings import resolve

    levels = parse_list(freeze_levels, int) or []
    given = dict(settings or {})
    if "model" not in given:  # the source's architecture unless another is asked for
        arch = load_checkpoint(source).get("arch")
        name = arch.get("name", "cnn") if isinstance(arch, dict) else "cnn"
        given["model"] = spec_named_by_file(name, source).name  # never a module it names
    cfg = resolve({**given, "data": str(path), "report": False})
    rows = compare_transfer(source, cfg, levels, out, scratch=scratch)
    t = Table(title=f"transfer from {source}")
    t.add_column("setting")
    for s in SPLITS:
        t.add_column(f"{s} acc", justify="right")
        t.add_column(f"{s} AUROC", justify="right")
    for r in rows:
        t.add_row(r["setting"], *(cell(r.get(f"{s}_{m}")) for s in SPLITS
                                  for m in ("accuracy", "auroc")))
    stdout.print(t)
    console.print(f"table: {Path(out) / 'transfer.csv'}")


