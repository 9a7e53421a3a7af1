"""Hyperparameter search on Optuna: TPE sampling, pruning on validation loss, many workers.

A search folder looks like this:

    <out>/study.db            the Optuna study (default storage: SQLite; --storage for a server)
    <out>/trials/<n>/         one complete run folder per trial (pruned ones hold pruned.json)
    <out>/leaderboard.csv     one row per trial, best first
    <out>/curves.png          every trial's validation curves overlaid (the best one bold)
    <out>/experiment.html     the leaderboard and the curves on the page every experiment
                              writes, linking each trial's folder (and report, if written)
    <out>/search.json         storage, study, space, metric and the best trial's run folder

Every worker (the --workers processes of this machine, and any process on another machine that
joins the same --storage/--study) asks the study for the next trial, trains it with the same
run_training as `cnnlab train` and reports its metric back. Optuna numbers trials atomically in
the storage, so no trial is run twice and the trial folders never clash. `--trials N` counts the
whole study: a rerun (or another machine) continues until the study holds N trials.

A trial whose worker died (killed, machine lost) is marked failed and queued again with the
same point: at once by the next worker of the same host (the trial records its pid), after
GRACE_S without a heartbeat by any other. The retry moves the dead trial's folder to its own
and resumes its last.pt, as does the retry of a trial stopped by Ctrl-C.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import shutil
import socket
import time
import warnings
from copy import deepcopy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab import io, urls
from cnnlab.console import console
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import (
    apply_point,
    comparable,
    experiment_dir,
    fmt,
    plot_overlay,
    print_table,
    train_or_resume,
)
from cnnlab.experiments.parallel import cpu_shares, interruptible, worker_pool
from cnnlab.experiments.search_space import describe, space_problem, suggest
from cnnlab.run import load_options, load_splits, resolve_data
from cnnlab.settings import TrainConfig
from cnnlab.train.callbacks import Callback
from cnnlab.train.events import FitContext
from cnnlab.train.trainer import Interrupted
from cnnlab.urls import mask_url

# --metric NAME -> (split, key in metrics.json); loss is minimised, the others maximised.
METRIC_KEYS = {"acc": "accuracy", "accuracy": "accuracy", "loss": "loss", "f1": "f1",
               "auroc": "auroc"}
PRUNERS = ("median", "halving", "none")
# A running trial's worker writes a heartbeat every HEARTBEAT_S; one silent for GRACE_S is
# taken for dead by any worker of the study (those of its own host see a dead pid at once).
HEARTBEAT_S = 30
GRACE_S = 120


def metric_key(metric: str) -> tuple[str, str, str]:
    """(split, metrics.json key, default direction) of --metric, e.g. val_acc."""
    split, _, key = metric.partition("_")
    if split not in ("val", "test", "train") or key not in METRIC_KEYS:
        raise CnnlabError(f"--metric {metric!r}: choose val_acc, val_loss, val_f1, val_auroc (or "
                          "the same of test/train)")
    key = METRIC_KEYS[key]
    return split, key, "minimize" if key == "loss" else "maximize"


@dataclass
class SearchSpec:
    """Everything a worker process needs (picklable: it crosses the process boundary)."""

    base: dict
    space: dict
    out: str
    storage: str
    study: str
    metric: str = "val_acc"
    direction: str = "maximize"
    pruner: str = "median"
    prune_after: int = 2
    trials: int | None = None
    deadline: float | None = None  # time.time() after which no new trial starts
    seed: int = 0
    verbose: bool = True
    worker: int = 0
    cpus: list[int] = field(default_factory=list)


@dataclass
class SearchResult:
    """The search folder, the leaderboard rows (best first) and the best row."""

    folder: Path
    rows: list[dict]
    best: dict | None
    seconds: float = 0.0


def require_optuna() -> None:
    """Optuna is an extra: say how to install it instead of an ImportError."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise CnnlabError("cnnlab search needs Optuna: pip install optuna (or pip install -e "
                          "'.[search]' in the cnnlab clone)") from None


# ---- storage and study --------------------------------------------------------------------
def default_storage(folder: Path) -> str:
    """sqlite:///<folder>/study.db (absolute, so every worker opens the same file)."""
    return f"sqlite:///{(folder / 'study.db').resolve()}"


def make_storage(url: str) -> Any:
    """Optuna RDB storage with a heartbeat, so trials of a killed worker are marked failed."""
    import optuna

    kw: dict = {}
    if url.startswith("sqlite:///") and ":memory:" not in url:
        kw["engine_kwargs"] = {"creator": _sqlite_connect(url[len("sqlite:///"):])}
    engine_url = storage_url(url)
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # the heartbeat is marked experimental in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _storage_class()(engine_url, **kw, **_heartbeat_kw())
        except ImportError as exc:
            plain = engine_url.partition("://")[0].partition("+")[0].lower()
            hint = urls.driver_hint(plain) or "pip install the database's driver"
            raise CnnlabError(f"--storage {mask_url(url)}: {urls.mask_text(str(exc))}; run "
                              f"{hint}") from None
        except Exception as exc:  # noqa: BLE001 - first processes race to create the tables
            if attempt == 5:
                raise CnnlabError(f"--storage {mask_url(url)}: cannot open it "
                                  f"({urls.mask_text(str(exc))})") from None
            time.sleep(0.5 + attempt)
    raise AssertionError("unreachable")


def storage_url(url: str) -> str:
    """The URL SQLAlchemy gets: a raw "@" in the password encoded, and a plain postgresql://
    (or mysql://) pointed at the driver that is installed (SQLAlchemy's default may not be)."""
    return urls.with_installed_driver(urls.encode_password(url), "--storage")


def _sqlite_connect(path: str) -> Any:
    """A connection factory for the study file shared by this machine's workers."""
    import sqlite3

    def connect() -> sqlite3.Connection:
        # Wait for another worker's lock instead of failing after 5 s; write-ahead logging
        # without an fsync per commit makes a trial's ~20 small writes 4x cheaper (0.7 s ->
        # 0.15 s measured). Both are safe for processes of one machine on a local disk.
        con = sqlite3.connect(path, timeout=120, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        return con
    return connect


@functools.cache
def _storage_class() -> type:
    """RDBStorage whose heartbeat thread fails quietly (a full disk, a lost server): the
    trial's own next write meets the same error and reports it in one line, where Optuna's
    thread would print a 50-line traceback."""
    import optuna

    class QuietHeartbeatStorage(optuna.storages.RDBStorage):
        def record_heartbeat(self, trial_id: int) -> None:
            with contextlib.suppress(Exception):
                super().record_heartbeat(trial_id)

    return QuietHeartbeatStorage


def _heartbeat_kw() -> dict:
    """The heartbeat arguments of RDBStorage; a trial found stale is queued again."""
    import inspect

    import optuna

    params = inspect.signature(optuna.storages.RDBStorage).parameters
    # renamed in Optuna 4.9 (the old name still works there, with a warning)
    callback = ("heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params
                else "failed_trial_callback")
    return {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S, callback: retry_trial}


def retry_trial(study: Any, trial: Any) -> None:
    """Queue a trial that did not finish (worker died, Ctrl-C) again: the same point, the
    epochs it reported (for the pruner), and where its run folder is, to resume it."""
    import optuna

    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.WAITING, params=trial.params,
        distributions=trial.distributions, intermediate_values=trial.intermediate_values,
        user_attrs={"retry_of": trial.number,
                    **{f"resume_{k}": trial.user_attrs[k] for k in ("run_dir", "host")
                       if k in trial.user_attrs}}))


def _alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_orphans(study: Any) -> list[int]:
    """Mark failed, and queue again, the running trials whose worker is gone: those of this
    host whose process is dead (at once), and any whose heartbeat is older than GRACE_S.
    The numbers of the trials failed here."""
    import optuna

    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or not isinstance(pid, int) or _alive(pid):
            continue
        try:  # exactly one process wins this, so the trial is queued again only once
            study.tell(t.number, state=optuna.trial.TrialState.FAIL)
        except (ValueError, RuntimeError):  # finished meanwhile (UpdateFinishedTrialError)
            continue
        retry_trial(study, t)
        failed.append(t.number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # other hosts: their stale callback retries
    return failed


def _take_over(trial: Any, run_dir: Path) -> bool:
    """A retried trial takes the dead one's folder (same host only: another machine's paths
    mean nothing here) to resume its last.pt; False when there is nothing to resume."""
    old = trial.user_attrs.get("resume_run_dir")
    if (not old or trial.user_attrs.get("resume_host") != socket.gethostname()
            or not (Path(old) / "last.pt").is_file() or run_dir.exists()):
        return False
    os.replace(old, run_dir)
    return True


PRIMES = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71)


def radical_inverse(k: int, base: int) -> float:
    """The k-th point (k >= 0) of van der Corput's sequence in `base`: 0, 1/2, 1/4, 3/4, ..."""
    u, f = 0.0, 1.0 / base
    while k:
        k, digit = divmod(k, base)
        u += digit * f
        f /= base
    return u


class SpaceFillingStartup:
    """The start-up trials of the search: trial n takes the n-th point of a Halton sequence
    (one prime base per setting, shifted by the seed) instead of a random draw.

    A small study spends most of its trials in start-up (5 of 12 here), and random points leave
    gaps: in one benchmark run all random SGD trials had low rates, so the model never learnt
    that SGD does well at high ones, where the equivalent grid found the best point. Halton's
    first 2^k points in base 2 fall one in each 1/2^k of the range; the point of trial n depends
    only on (seed, n), so workers on any number of machines draw distinct points.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.dims: dict[str, int] = {}  # setting -> dimension, in the order they are suggested

    def _u(self, name: str, number: int) -> float:
        d = self.dims.setdefault(name, len(self.dims))
        shift = np.random.default_rng([self.seed, d]).random()
        return (radical_inverse(number, PRIMES[d % len(PRIMES)]) + shift) % 1.0

    def sample_independent(self, study: Any, trial: Any, name: str, dist: Any) -> Any:
        """The value of setting `name` for this start-up trial."""
        import optuna.distributions as od

        u = self._u(name, trial.number)
        if isinstance(dist, od.CategoricalDistribution):
            return dist.choices[min(int(u * len(dist.choices)), len(dist.choices) - 1)]
        lo, hi = float(dist.low), float(dist.high)
        if dist.log:
            x = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
        else:
            x = lo + u * (hi - lo)
        if isinstance(dist, od.IntDistribution):
            step = dist.step or 1
            return int(min(hi, lo + round((x - lo) / step) * step))
        if getattr(dist, "step", None):
            x = lo + round((x - lo) / dist.step) * dist.step
        return min(hi, max(lo, x))

    # the rest of what TPESampler asks of its start-up sampler
    def before_trial(self, study: Any, trial: Any) -> None:
        """Nothing to prepare."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        """Nothing to record."""

    def reseed_rng(self) -> None:
        """Deterministic: nothing to reseed."""


def make_sampler(seed: int) -> Any:
    """TPE whose randomness for trial n depends only on (seed, n): a one-worker study repeats
    exactly, and parallel workers started with the same seed do not propose the same points.
    Its start-up trials are space-filling (SpaceFillingStartup), not random."""
    import optuna

    class TrialSeededTPE(optuna.samplers.TPESampler):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self._random_sampler = SpaceFillingStartup(seed)  # private in Optuna 3-5

        def before_trial(self, study: Any, trial: Any) -> None:
            super().before_trial(study, trial)
            s = (seed * 1_000_003 + trial.number) % (2**32)
            try:  # private in Optuna; without it trials are still valid, just not repeatable
                self._rng.rng.seed(s)
            except AttributeError:
                pass

    # multivariate: learning rate and optimizer interact; constant_liar: a worker does not
    # propose what another is still training (Optuna's advice for parallel studies).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TrialSeededTPE(seed=seed, n_startup_trials=5, multivariate=True,
                              constant_liar=True)


def make_pruner(kind: str, after: int) -> Any:
    """median: prune below the median of earlier trials at the same epoch; halving: successive
    halving (keep the best third at epochs after, 3*after, ...); none."""
    import optuna

    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=after)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, after))
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise CnnlabError(f"--pruner {kind!r}: choose {', '.join(PRUNERS)}")


def open_study(spec: SearchSpec, storage: Any = None) -> Any:
    """Create the study or join it; refuse one made with another space, metric or settings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own one line per trial instead
    storage = storage or make_storage(spec.storage)
    study = optuna.create_study(storage=storage, study_name=spec.study, load_if_exists=True,
                                direction=spec.direction, sampler=make_sampler(spec.seed),
                                pruner=make_pruner(spec.pruner, spec.prune_after))
    mine = _identity(spec)
    old = study.user_attrs.get("cnnlab")
    if old is None:
        study.set_user_attr("cnnlab", mine)
    elif old != mine:
        diff = [k for k in mine if old.get(k) != mine[k]]
        raise CnnlabError(f"study {spec.study!r} in {mask_url(spec.storage)} was made with "
                          f"another {', '.join(diff)}; pass --force to start it again or "
                          "another --study/--out")
    if study.direction.name.lower() != spec.direction:
        raise CnnlabError(f"study {spec.study!r} {study.direction.name.lower()}s its metric, "
                          f"not {spec.direction}")
    name_values(study, spec.metric)
    return study


def name_values(study: Any, metric: str) -> None:
    """Name the objective (Optuna's plots and dashboard say val_acc, not "Objective Value") and
    record which per-epoch column its intermediate values are (see TrialPruning)."""
    if study.metric_names != [metric]:
        with warnings.catch_warnings():  # experimental in some Optuna versions: no warning
            warnings.simplefilter("ignore")
            study.set_metric_names([metric])
    column = epoch_column(metric)
    if study.user_attrs.get("intermediate_values") != column:
        study.set_user_attr("intermediate_values", column)


def epoch_column(metric: str) -> str:
    """The metrics.csv column reported after each epoch for --metric: the metric itself where
    it is measured every epoch (val_acc, val_loss, train_*), else the validation accuracy or
    loss, whichever rises or falls with it."""
    split, key, _ = metric_key(metric)
    short = "loss" if key == "loss" else "acc"
    if split in ("train", "val") and key in ("accuracy", "loss"):
        return f"{split}_{short}"
    return f"val_{short}"


def _identity(spec: SearchSpec) -> dict:
    """What must match for a worker to join a study (JSON-normalised: tuples become lists)."""
    settings = comparable(spec.base, ignore=[k for k in spec.space if "." not in k])
    settings.pop("data", None)  # other machines keep the data at other paths
    return json.loads(json.dumps({"space": spec.space, "metric": spec.metric,
                                  "settings": settings}, sort_keys=True, default=str))


# ---- one worker ----------------------------------------------------------------------------
class TrialPruning(Callback):
    """Reports each epoch's value of the objective (epoch_column: val_acc for a val_acc study,
    with its own sign) to the trial and stops the run when the pruner says so; the run folder
    stays (config, metrics.csv, checkpoints) with pruned.json added."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.column = epoch_column(metric)

    def on_epoch_end(self, ctx: FitContext, row: dict) -> None:
        """Report, then raise optuna.TrialPruned if this trial is worse than its peers."""
        import optuna

        value = row.get(self.column)
        if value is None:  # no validation split: the training side of the same measure
            value = row["train_" + self.column.partition("_")[2]]
        # As the objective: the pruner compares it with the other trials' values of the same
        # epoch in the study's direction (a maximised val_acc study prunes the lowest).
        self.trial.report(float(value), row["epoch"])
        if self.trial.should_prune():
            io.write_json(ctx.run_dir / "pruned.json", {
                "trial": self.trial.number, "epoch": row["epoch"], "val_loss": row["val_loss"],
                "val_acc": row["val_acc"], "train_loss": row["train_loss"]})
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")


class _Surplus(Exception):
    """A trial created after the study reached --trials by a racing worker (marked, not run)."""


def counted(study: Any, below: int | None = None) -> int:
    """Trials of the study that count towards --trials: all but surplus ones, those queued and
    not yet started, and those that did not finish and were queued again."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    return sum(1 for t in trials
               if not t.user_attrs.get("surplus") and t.number not in retried
               and t.state.name != "WAITING" and (below is None or t.number < below))


def run_worker(spec: SearchSpec) -> int:
    """Run trials until the study holds spec.trials or the deadline passes; the trials run."""
    import optuna

    if spec.cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(spec.cpus))
    base = TrainConfig.from_dict(spec.base)
    study = open_study(spec)
    splits_cache: dict[str, Any] = {}
    folder = Path(spec.out)
    tag = f"\\[w{spec.worker}] " if spec.worker else ""  # escaped: not rich markup
    done = 0

    def objective(trial: Any) -> float:
        if spec.trials is not None and counted(study, below=trial.number) >= spec.trials:
            trial.set_user_attr("surplus", True)
            raise _Surplus
        point = suggest(trial, spec.space)
        run_dir = folder / "trials" / str(trial.number)
        trial.set_user_attr("run_dir", str(run_dir.resolve()))
        trial.set_user_attr("host", socket.gethostname())
        # which process runs it: a dead one's trial is failed at once (and tests: none twice)
        trial.set_user_attr("pid", os.getpid())
        try:
            cfg = apply_point(base, point)
            cfg.out = str(run_dir)
            key = repr(load_options(cfg))
            if key not in splits_cache:
                splits_cache[key] = load_splits(cfg, verbose=False)
            resume = _take_over(trial, run_dir)
            if resume and spec.verbose:
                console.print(f"{tag}trial {trial.number}: resuming trial "
                              f"{trial.user_attrs['retry_of']} from its checkpoint")
            res = train_or_resume(cfg, splits_cache[key], resume, verbose=False,
                                  callbacks=[TrialPruning(trial, spec.metric)])
        except optuna.TrialPruned as exc:
            if spec.verbose:
                console.print(f"{tag}trial {trial.number} {_point_text(point)}: [yellow]{exc}[/]")
            raise
        except (Interrupted, KeyboardInterrupt):
            # its checkpoint is saved: the next run resumes it instead of starting anew
            trial.set_user_attr("error", "interrupted")
            retry_trial(study, next(t for t in study.get_trials(deepcopy=False)
                                    if t.number == trial.number))
            raise
        except CnnlabError as exc:
            trial.set_user_attr("error", str(exc))
            if spec.verbose:
                console.print(f"{tag}trial {trial.number} {_point_text(point)}: [red]failed[/]: "
                              f"{exc}")
            raise
        split, key, _ = metric_key(spec.metric)
        value = (res.metrics.get(split) or {}).get(key)
        if value is None:
            raise CnnlabError(f"--metric {spec.metric}: the run has no {split} split")
        for k in ("train_seconds", "epochs_run", "best_epoch"):
            trial.set_user_attr(k, res.metrics.get(k))
        if spec.verbose:
            console.print(f"{tag}trial {trial.number} {_point_text(point)}: {spec.metric} "
                          f"{value:.4f} ({res.metrics.get('train_seconds', 0):.1f}s)")
        return float(value)

    while True:
        fail_orphans(study)
        if spec.deadline is not None and time.time() >= spec.deadline:
            break
        if spec.trials is not None and counted(study) >= spec.trials:
            break
        before = len(study.get_trials(deepcopy=False))
        study.optimize(objective, n_trials=1, catch=(CnnlabError, _Surplus))
        last = study.get_trials(deepcopy=False)[before:] or study.get_trials(deepcopy=False)[-1:]
        if any(t.user_attrs.get("surplus") for t in last):
            break
        done += 1
    return done


def _point_text(point: dict) -> str:
    return " ".join(f"{k.replace('model_args.', '')}={fmt(v, 4) if isinstance(v, float) else v}"
                    for k, v in point.items())


def _worker_entry(spec_dict: dict) -> int:
    """Process entry point of a local worker (spawned: a fresh interpreter)."""
    with interruptible():
        return run_worker(SearchSpec(**spec_dict))


# ---- the whole search ----------------------------------------------------------------------
def run_search(base: TrainConfig, space: dict, out: str | Path | None = None,
               trials: int | None = None, timeout: float | None = None,
               metric: str = "val_acc", direction: str | None = None, pruner: str = "median",
               prune_after: int = 2, workers: int = 1, storage: str | None = None,
               study: str | None = None, force: bool = False, verbose: bool = True
               ) -> SearchResult:
    """Search `space` (see search_space.py) around the settings `base` with Optuna."""
    require_optuna()
    if not space:
        raise CnnlabError("search: nothing to search; give a range or a list, e.g. "
                          "--lr 1e-4:1e-1:log --optimizer sgd,adamw")
    if trials is None and timeout is None:
        raise CnnlabError("search: give --trials N and/or --timeout SECONDS")
    if workers < 1:
        raise CnnlabError("--workers must be at least 1")
    split, _, natural = metric_key(metric)
    direction = direction or natural
    if direction not in ("minimize", "maximize"):
        raise CnnlabError(f"--direction {direction!r}: choose minimize or maximize")
    make_pruner(pruner, prune_after)
    base = deepcopy(base)
    resolve_data(base)
    apply_point(base, {})  # the base itself is valid; each point is checked when sampled
    splits = load_splits(base, verbose)  # fails early on bad data; fills the decode cache
    if split == "val" and splits.val is None:
        raise CnnlabError(f"--metric {metric}: the data has no validation split (--val-split "
                          "is 0); choose a train_ metric or give --val-split")
    folder = experiment_dir(out, base.runs_dir, "search", splits, base)
    if force and folder.exists():
        for name in ("trials", "study.db", "leaderboard.csv", "experiment.html", "curves.png",
                     "search.json"):
            p = folder / name
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    spec = SearchSpec(base=base.to_dict(), space=space, out=str(folder.resolve()),
                      storage=storage or default_storage(folder),
                      study=study or folder.resolve().name, metric=metric, direction=direction,
                      pruner=pruner, prune_after=prune_after, trials=trials,
                      deadline=time.time() + timeout if timeout else None, seed=base.seed,
                      verbose=verbose)
    if force and storage:
        _delete_study(spec)
    the_study = open_study(spec)  # checks the space against a study being continued
    orphans = fail_orphans(the_study)
    if orphans and verbose:
        console.print(f"[yellow]trial(s) {', '.join(map(str, orphans))}: their worker died; "
                      "marked failed and queued again to resume[/]")
    io.write_json(folder / "search.json", _meta(spec, None))
    if verbose:
        have = counted(the_study)
        goal = f"{trials} trials" if trials is not None else "trials"
        console.print(f"[bold]search[/] {describe(space)} on {splits.source or 'data'}: {goal}"
                      f"{f' within {timeout:g}s' if timeout else ''}, {direction} {metric}, "
                      f"pruner {pruner}, {workers} worker(s)"
                      f"{f'; continuing a study of {have} trials' if have else ''} -> {folder}")
    t0 = time.perf_counter()
    if workers == 1:
        run_worker(spec)
    else:
        _run_local_workers(spec, workers)
    seconds = time.perf_counter() - t0
    return write_leaderboard(folder, spec, the_study, seconds, verbose)


def _run_local_workers(spec: SearchSpec, workers: int) -> None:
    """N processes of run_worker on this machine, each on its own share of the CPUs."""
    shares = cpu_shares(workers)
    threads = spec.base.get("num_threads")
    with worker_pool(workers) as pool:  # its processes die with this one
        futures = [pool.submit(_worker_entry, {
            **asdict(spec), "worker": i + 1, "cpus": shares[i],
            "base": {**spec.base, "num_threads": threads or max(1, len(shares[i]))}})
            for i in range(workers)]
        for f in futures:
            f.result()  # a worker's error (bad storage, Ctrl-C) surfaces here


def _delete_study(spec: SearchSpec) -> None:
    import optuna

    with contextlib.suppress(KeyError):  # no such study: nothing to delete
        optuna.delete_study(study_name=spec.study, storage=make_storage(spec.storage))


def _meta(spec: SearchSpec, best: dict | None) -> dict:
    return {"kind": "search", "storage": mask_url(spec.storage), "study": spec.study,
            "space": spec.space, "metric": spec.metric, "direction": spec.direction,
            "pruner": spec.pruner, "prune_after": spec.prune_after, "trials": spec.trials,
            "data": spec.base.get("data"), "best": best}


# ---- leaderboard ---------------------------------------------------------------------------
def leaderboard_rows(study: Any, metric: str, direction: str) -> list[dict]:
    """One row per trial (surplus ones left out): finished best first, then pruned, failed."""
    rows = []
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}
    for t in trials:
        if t.user_attrs.get("surplus"):
            continue
        state = t.state.name.lower()
        last = max(t.intermediate_values) if t.intermediate_values else None
        row = {"trial": t.number, "state": state,
               metric: t.value if state == "complete" else None,
               **t.params,
               "epochs_run": t.user_attrs.get("epochs_run", last),
               "best_epoch": t.user_attrs.get("best_epoch"),
               "train_seconds": t.user_attrs.get("train_seconds"),
               "seconds": round(t.duration.total_seconds(), 2) if t.duration else None,
               "pruned_at_epoch": last if state == "pruned" else None,
               "error": t.user_attrs.get("error", "its worker died")
               + f"; continued as trial {retried[t.number]}" if t.number in retried
               else t.user_attrs.get("error"),
               "host": t.user_attrs.get("host"), "run_dir": t.user_attrs.get("run_dir")}
        rows.append(row)
    sign = -1.0 if direction == "maximize" else 1.0
    order = {"complete": 0, "running": 1, "pruned": 2, "fail": 3, "waiting": 4}
    rows.sort(key=lambda r: (order.get(r["state"], 5),
                             sign * r[metric] if r[metric] is not None else 0.0, r["trial"]))
    for i, r in enumerate(rows):
        r["best"] = i == 0 and r["state"] == "complete"
    return rows


def write_leaderboard(folder: Path, spec: SearchSpec, study: Any, seconds: float = 0.0,
                      verbose: bool = True) -> SearchResult:
    """leaderboard.csv/.html and search.json (with the best trial's run folder); print it."""
    rows = leaderboard_rows(study, spec.metric, spec.direction)
    best = rows[0] if rows and rows[0]["best"] else None
    params = list(spec.space)
    cols = ["trial", "state", spec.metric, *params, "epochs_run", "best_epoch", "train_seconds",
            "seconds", "pruned_at_epoch", "best", "error", "host", "run_dir"]
    io.write_csv(folder / "leaderboard.csv", rows, cols)
    best_info = None if best is None else {
        "trial": best["trial"], "value": best[spec.metric],
        "params": {k: best.get(k) for k in params}, "run_dir": best["run_dir"]}
    meta = _meta(spec, best_info)
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail",
                                                              "running")}
    meta.update({"counts": counts, "seconds": round(seconds, 2) if seconds else None})
    io.write_json(folder / "search.json", meta)
    page = write_search_page(folder, rows, cols, meta)
    if verbose:
        print_leaderboard(rows, spec.metric, params, meta)
        console.print(f"leaderboard: {folder / 'leaderboard.csv'}; page: {page}")
    return SearchResult(folder, rows, best, seconds)


def print_leaderboard(rows: list[dict], metric: str, params: list[str], meta: dict) -> None:
    """The leaderboard as a console table (at most 30 rows)."""
    cols = ["trial", "state", metric, *params, "epochs", "time s"]
    body = [[r["trial"], r["state"], r[metric], *(r.get(p) for p in params), r["epochs_run"],
             None if r["seconds"] is None else f"{r['seconds']:.1f}"] for r in rows[:30]]
    c = meta.get("counts", {})
    caption = (f"{c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, "
               f"{c.get('fail', 0)} failed" + (f"; {meta['seconds']:.1f}s"
                                                 if meta.get("seconds") else ""))
    print_table(f"Search '{meta['study']}': {meta['direction']} {metric}", cols, body,
                0 if rows and rows[0].get("best") else None, caption)
    if meta.get("best"):
        b = meta["best"]
        console.print(f"best: trial {b['trial']} {metric} {b['value']:.4f} -> {b['run_dir']}")


def write_search_page(folder: Path, rows: list[dict], cols: list[str], meta: dict) -> Path:
    """experiment.html, as every experiment writes it: the leaderboard (best first), every
    trial's validation curves overlaid, and links to each trial's report and folder."""
    from cnnlab.report.experiment_page import build_experiment_page

    runs = [Path(r["run_dir"]) if r.get("run_dir") else None for r in rows]
    curves = {f"trial {r['trial']}": io.read_csv(run / "metrics.csv") for r, run in
              zip(rows, runs, strict=True) if run is not None and (run / "metrics.csv").is_file()}
    best = f"trial {rows[0]['trial']}" if rows and rows[0].get("best") else None
    title = f"Search '{meta['study']}': {meta['direction']} {meta['metric']}"
    if curves:
        # rows are best first, then pruned and failed: the order decides who is coloured
        plot_overlay(curves, folder / "curves.png", title + " (validation curves)",
                     highlight=best, ranked=[f"trial {r['trial']}" for r in rows],
                     states={f"trial {r['trial']}": r["state"] for r in rows})
    table = [{c: r.get(c) for c in cols if c not in ("run_dir", "host", "best")}
             | {"best": bool(r.get("best"))} for r in rows]
    c = meta.get("counts", {})
    summary = {"kind": "search", "study": meta["study"], "space": describe(meta["space"]),
               "metric": f"{meta['direction']} {meta['metric']}", "pruner": meta.get("pruner"),
               "storage": meta.get("storage"),
               "trials": f"{c.get('complete', 0)} complete, {c.get('pruned', 0)} pruned, "
                         f"{c.get('fail', 0)} failed",
               "best": None if not meta.get("best") else
               f"trial {meta['best']['trial']}: {meta['metric']} {fmt(meta['best']['value'], 4)}"}
    return build_experiment_page(folder, title, table, runs, summary,
                                 curves="curves.png" if curves else None,
                                 table_file="leaderboard.csv")


def _text(v: object) -> bool:
    return isinstance(v, str) and bool(v)


def _count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _seconds(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        and v >= 0


# search.json's keys: a check of each value and what the check wants, for the message.
_META_KEYS: dict[str, tuple[Any, str]] = {
    "storage": (_text, "a storage URL"),
    "study": (_text, "a study name"),
    "metric": (lambda v: _text(v) and _is_metric(v), "a metric such as val_acc"),
    "direction": (lambda v: v in ("minimize", "maximize"), "minimize or maximize"),
    "pruner": (lambda v: v in PRUNERS, " or ".join(PRUNERS)),
    "prune_after": (_count, "a whole number of epochs"),
    "trials": (lambda v: v is None or _count(v), "a whole number of trials"),
    "seconds": (lambda v: v is None or _seconds(v), "a number of seconds"),
}
_OPTIONAL = ("prune_after", "trials", "seconds")  # older search.json files may lack them


def _is_metric(v: str) -> bool:
    try:
        metric_key(v)
    except CnnlabError:
        return False
    return True


def read_search_json(folder: Path) -> dict:
    """A search folder's search.json, checked key by key; one line naming the file (and the
    key and value) when it is unreadable, truncated or holds a wrong value."""
    path = folder / "search.json"
    if not path.is_file():
        raise CnnlabError(f"{folder}: not a search folder (no search.json)")
    meta = io.read_json(path, "search.json",
                        "; the same `cnnlab search` command run again rewrites it")
    for key, (ok, what) in _META_KEYS.items():
        if key not in meta and key not in _OPTIONAL:
            raise CnnlabError(f"{path}: the key {key!r} is missing")
        if key in meta and not ok(meta[key]):
            raise CnnlabError(f"{path}: {key} = {_shown(meta[key])} is not {what}")
    problem = space_problem(meta.get("space"))
    if problem:
        raise CnnlabError(f"{path}: space = {_shown(meta.get('space'))}: {problem}")
    return meta


def _shown(value: object) -> str:
    """A value from a file, short enough for one line."""
    text = json.dumps(value, ensure_ascii=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def show_search(folder: str | Path, storage: str | None = None) -> SearchResult:
    """Re-read a search's study (if reachable) and print its leaderboard."""
    require_optuna()
    folder = Path(folder).expanduser()
    meta = read_search_json(folder)
    url = storage or meta["storage"]
    if "***" in url:
        raise CnnlabError(f"{folder}: its storage has a password; pass --storage URL")
    spec = SearchSpec(base={}, space=meta["space"], out=str(folder), storage=url,
                      study=meta["study"], metric=meta["metric"], direction=meta["direction"],
                      pruner=meta["pruner"], prune_after=meta.get("prune_after", 1),
                      trials=meta.get("trials"))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = optuna.load_study(study_name=spec.study, storage=make_storage(url))
    except KeyError:
        raise CnnlabError(f"{folder}: study {spec.study!r} not found in {mask_url(url)}") \
            from None
    return write_leaderboard(folder, spec, study, meta.get("seconds") or 0.0)
