"""`cnnlab data fetch NAME` and `cnnlab data list`: the public sets the examples use."""

from __future__ import annotations

import typer
from rich.table import Table

from cnnlab.cli.app import app
from cnnlab.console import console, out

data_app = typer.Typer(help="Download the public data sets the examples use.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def fetch_cmd(
    name: str = typer.Argument(..., help="hymenoptera, mnist, kmnist, fashion-mnist or cifar10."),
    force: bool = typer.Option(False, "--force", help="Unpack again even if already there."),
) -> None:
    """Download NAME into the cache (checked, resumable) and print the folder to train on."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from cnnlab.data import fetch

    ds = fetch.lookup(name)
    if fetch.status(ds.name) == "fetched" and not force:
        console.print(f"{ds.name}: already in {fetch.dataset_dir(ds.name)}")
        print(fetch.dataset_dir(ds.name))
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), console=console, transient=True,
                   disable=not console.is_terminal)
    tasks: dict[str, object] = {}

    def progress(file: str, done: int, total: int | None) -> None:
        if file not in tasks:
            tasks[file] = bar.add_task(file, total=total)
        bar.update(tasks[file], completed=done, total=total)

    with bar:
        path = fetch.fetch(ds.name, progress, force=force)
    console.print(f"{ds.name}: ready in {path} (train with: cnnlab train {path})")
    print(path)  # stdout: `cnnlab train "$(cnnlab data fetch mnist)"`


@data_app.command("list")
def list_cmd() -> None:
    """The data sets `cnnlab data fetch` knows, and which are already here."""
    from cnnlab.data import fetch

    t = Table(title=f"data sets (in {fetch.datasets_root()})")
    for col in ("name", "status", "description", "checksums from"):
        t.add_column(col)
    for ds in fetch.DATASETS.values():
        t.add_row(ds.name, fetch.status(ds.name) or "-", ds.description, ds.source)
    out.print(t)
