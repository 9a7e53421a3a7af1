"""sweep, cv, seeds, compare and lr-find: experiments over the same training code."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab import settings as settings_model
from cnnlab.cli.app import app, parse_list
from cnnlab.cli.options import DATA_ARG_HELP, with_settings
from cnnlab.errors import CnnlabError
from cnnlab.settings import TrainConfig, parse_value

RERUN = "Re-running the same command skips finished members and resumes an interrupted one."


PATH = typer.Argument(None, help=DATA_ARG_HELP, show_default=False)


def _opt(default: object, *names: str, **kw: object) -> object:
    return typer.Option(default, *names, **kw)


# Experiments take every data, model, optimization, augmentation and hardware setting of
# `train` (same names, same defaults); members write their own reports only when asked.
LEARN = ("data", "model", "optimization", "augmentation", "hardware")
TRACKED = (*LEARN, "tracking")  # every member logs to --track (lr-find trains no run)
REPORT = _opt(False, "--report/--no-report", help="Write report.html in every member's run.",
              rich_help_panel="Output")
MEMBER_PLOTS = _opt(True, "--member-plots/--no-member-plots",
                    help="Write curves and confusion matrix PNGs in every member's run.",
                    rich_help_panel="Output")
FORCE = _opt(False, "--force", help="Delete the experiment's members and start again.",
             rich_help_panel="Output")
JOBS = _opt(1, "--jobs", "-j", min=1, metavar="N",
            help="Train N members at once, each in its own process on its share of the CPU "
                 "cores.", rich_help_panel="Hardware")


def _base(path: Path | None, given: dict, report: bool = False, member_plots: bool = True,
          **fixed: object) -> TrainConfig:
    """The validated settings every member starts from."""
    values = {**given, **fixed, "report": report}
    if path is not None:
        values["data"] = str(path)
    cfg = settings_model.resolve(values)
    if not member_plots:
        cfg.extra = {**cfg.extra, "plots": False}  # keeps the recipe's recipe_auto
    return cfg


def _grid_option(items: list[str]) -> dict[str, list]:
    grid = {}
    for item in items:
        key, vals = settings_model.key_value(item, "--grid", "KEY=V1,V2 (e.g. "
                                             "model_args.width=8,16)", value_required=True)
        grid[key] = [parse_value(v.strip()) for v in vals.split(",") if v.strip()]
    return grid


def split_grid(given: dict) -> tuple[dict, dict[str, list]]:
    """Comma-separated values of scalar settings become sweep axes; single values stay base."""
    base, grid = {}, {}
    for name, raw in given.items():
        s = settings_model.SETTINGS[name]
        if isinstance(raw, str) and "," in raw and s.sweepable:
            grid[name] = [s.check(v.strip()) for v in raw.split(",") if v.strip()]
        else:
            base[name] = raw
    return base, grid


@app.command(epilog=RERUN)
@with_settings(*TRACKED, mode="grid", config=True)
def sweep(
    path: Path | None = PATH,
    grid: list[str] = _opt([], "--grid", metavar="KEY=V1,V2",
                           help="Any setting KEY=V1,V2 (repeatable), e.g. "
                           "model_args.width=8,16 or momentum=0.5,0.9."),
    select: str = _opt("val_acc", "--select", metavar="val_acc|val_loss",
                       help="Pick the best by val_acc (ties: lower val loss) or val_loss."),
    prune: bool = _opt(False, "--prune", help="Delete the checkpoints of all but the best member."),
    out: Path | None = _opt(None, "--out", "-o", metavar="DIR",
                            help="Experiment folder [default: runs/sweep-DATA-MODEL]"),
    force: bool = FORCE, report: bool = REPORT, member_plots: bool = MEMBER_PLOTS,
    jobs: int = JOBS, settings: dict | None = None,
) -> None:
    """Grid search over any settings (e.g. --lr 1e-4,1e-3 --optimizer sgd,adam); the best is
    marked."""
    from cnnlab.experiments.sweep import run_sweep

    single, grid_values = split_grid(settings or {})
    grid_values.update(_grid_option(grid))
    if not grid_values:
        raise CnnlabError("sweep: nothing to vary; give e.g. --lr 1e-4,1e-3,1e-2")
    first = {k: v[0] for k, v in grid_values.items() if "." not in k}
    base = _base(path, {**single, **first}, report, member_plots)
    run_sweep(base, grid_values, out=out, select=select, prune=prune, force=force,
              jobs=jobs)


@app.command(epilog=RERUN)
@with_settings(*TRACKED, config=True)
def cv(
    path: Path | None = PATH,
    folds: int = _opt(5, "--folds", "-k", min=2, metavar="K", help="Number of folds."),
    inner_val: float = _opt(0.1, "--inner-val", min=0.0, max=0.5, metavar="FRACTION",
                            help="Fraction of each fold's training part kept for picking the best "
                                 "epoch (0: none, the last best train-loss epoch is used)."),
    out: Path | None = _opt(None, "--out", "-o", metavar="DIR",
                            help="Experiment folder [default: runs/cv-DATA-MODEL]"),
    force: bool = FORCE, report: bool = REPORT, member_plots: bool = MEMBER_PLOTS,
    jobs: int = JOBS, settings: dict | None = None,
) -> None:
    """Stratified k-fold cross-validation on the training data (train + val; test untouched)."""
    from cnnlab.experiments.cv import run_cv

    run_cv(_base(path, settings or {}, report, member_plots), folds, out=out,
           val_fraction=inner_val, force=force, jobs=jobs)


@app.command(epilog=RERUN)
@with_settings(*TRACKED, config=True)
def seeds(
    path: Path | None = PATH,
    n: int = _opt(10, "--n", "-n", min=1, help="Number of seeds (seed, seed+1, ...)."),
    seed_list: str | None = _opt(None, "--seeds", metavar="LIST",
                                 help="Explicit seeds, e.g. 0,1,2,7."),
    out: Path | None = _opt(None, "--out", "-o", metavar="DIR",
                            help="Experiment folder [default: runs/seeds-DATA-MODEL]"),
    force: bool = FORCE, report: bool = REPORT, member_plots: bool = MEMBER_PLOTS,
    jobs: int = JOBS, settings: dict | None = None,
) -> None:
    """The same training with n seeds on one data split: mean ± std, min and max."""
    from cnnlab.experiments.seeds import run_seeds

    run_seeds(_base(path, settings or {}, report, member_plots), n,
              seeds=parse_list(seed_list, int), out=out, force=force, jobs=jobs)


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders (or experiment folders)."),
    out: Path = _opt(Path("runs/compare"), "--out", "-o", metavar="DIR",
                     help="Folder for the summary."),
) -> None:
    """Side by side: settings that differ, final metrics and overlaid validation curves."""
    from cnnlab.experiments.compare import compare_runs

    compare_runs(runs, out=out)


@app.command("lr-find")
@with_settings(*LEARN, skip=("epochs", "schedule", "patience"), config=True)
def lr_find_cmd(
    path: Path | None = PATH,
    start_lr: float = _opt(1e-7, "--start-lr", min=0.0, metavar="RATE",
                           help="The first learning rate."),
    end_lr: float = _opt(10.0, "--end-lr", min=0.0, metavar="RATE",
                         help="The last learning rate."),
    steps: int = _opt(100, "--steps", min=5, metavar="N",
                      help="Batches to train (one learning rate each)."),
    out: Path | None = _opt(None, "--out", "-o", metavar="DIR",
                            help="Folder for the plot [default: runs/lr-find-DATA-MODEL]"),
    settings: dict | None = None,
) -> None:
    """Loss against an exponentially growing learning rate, with a suggested --lr."""
    from cnnlab.experiments.lrfind import lr_find

    base = _base(path, settings or {}, epochs=1, schedule="none")
    lr_find(base, out=out, start_lr=start_lr, end_lr=end_lr, steps=steps)


SEARCH_EPILOG = ("Re-running the same command continues the study (--trials counts the whole "
                 "study). `cnnlab search show DIR` prints a search's leaderboard. Several machines "
                 "join one study with the same command and --storage URL --study NAME "
                 "(docs/search.md).")


@app.command(epilog=SEARCH_EPILOG)
@with_settings(*LEARN, mode="search", config=True)
def search(
    path: Path | None = PATH,
    show_dir: Path | None = typer.Argument(None, hidden=True, metavar="DIR"),
    param: list[str] = _opt([], "--param", metavar="KEY=SPEC",
                            help="Any setting or model_args.NAME: KEY=LO:HI[:log], KEY=V1,V2 or "
                                 "KEY=V (repeatable), e.g. model_args.width=8,16,32."),
    trials: int | None = _opt(None, "--trials", min=1, metavar="N",
                              help="Stop when the study holds N trials (all workers, all runs)."),
    timeout: float | None = _opt(None, "--timeout", min=0.0, metavar="SECONDS",
                                 help="Start no new trial after this many seconds."),
    metric: str = _opt("val_acc", "--metric", metavar="NAME",
                       help="What to optimize: val_acc, val_loss, val_f1, val_auroc (or test_/"
                            "train_ ones)."),
    direction: str | None = _opt(None, "--direction", metavar="maximize|minimize",
                                 help="[default: minimize for losses, else maximize]"),
    pruner: str = _opt("median", "--pruner", metavar="median|halving|none",
                       help="Stop bad trials early on their per-epoch validation loss."),
    prune_after: int = _opt(2, "--prune-after", min=1, metavar="EPOCHS",
                            help="No trial is pruned before this many epochs."),
    workers: int = _opt(1, "--workers", min=1, metavar="N",
                        help="Trial processes on this machine (the CPU cores are split).",
                        rich_help_panel="Hardware"),
    storage: str | None = _opt(None, "--storage", metavar="URL",
                               help="Optuna storage shared by workers on any machine, e.g. "
                                    "postgresql://user:pw@host/db [default: "
                                    "study.db, an SQLite file in the --out folder]."),
    study: str | None = _opt(None, "--study", metavar="NAME",
                             help="Study name in the storage [default: the --out folder's name]."),
    out: Path | None = _opt(None, "--out", "-o", metavar="DIR",
                            help="Search folder [default: runs/search-DATA-MODEL]"),
    force: bool = _opt(False, "--force", help="Delete the study and its trials and start again.",
                       rich_help_panel="Output"),
    report: bool = REPORT, member_plots: bool = MEMBER_PLOTS,
    settings: dict | None = None,
) -> None:
    """Hyperparameter search (Optuna TPE, pruning) over any settings, e.g. --lr 1e-4:1e-1:log
    --batch-size 32,64 --optimizer sgd,adamw; `cnnlab search show DIR` prints a leaderboard."""
    from cnnlab.experiments.search import run_search, show_search
    from cnnlab.experiments.search_space import first_point, split_space

    if path is not None and str(path) == "show" and not path.exists():
        if show_dir is None:
            raise CnnlabError("search show: give the search folder, e.g. cnnlab search show "
                              "runs/search-digits-cnn")
        show_search(show_dir, storage)
        return
    if show_dir is not None:
        raise CnnlabError(f"search: unexpected argument {str(show_dir)!r} (one data path only)")
    fixed, space = split_space(settings or {}, param)
    if not space:
        raise CnnlabError("search: nothing to search; give a range or a list, e.g. "
                          "--lr 1e-4:1e-1:log --optimizer sgd,adamw")
    first = {k: v for k, v in first_point(space).items() if "." not in k}
    base = _base(path, {**fixed, **first}, report, member_plots)
    if storage is not None and study is None:
        raise CnnlabError("--storage: give --study NAME too, the same on every machine")
    if direction is not None:
        direction = direction.strip().lower()
    run_search(base, space, out=out, trials=trials, timeout=timeout, metric=metric,
               direction=direction, pruner=pruner, prune_after=prune_after, workers=workers,
               storage=storage, study=study, force=force)
