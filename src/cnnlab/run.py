"""One training run end to end: data, run folder, fit, final metrics, plots, predictions, report."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab import io, settings
from cnnlab.console import busy, console, data_progress
from cnnlab.data.imageset import DataSplits
from cnnlab.data.load import LoadOptions, load_data
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.calibration import calibrate_run
from cnnlab.evaluate.metrics import baselines, compute_metrics
from cnnlab.evaluate.predictor import Predictor, write_predictions
from cnnlab.models.registry import spec_named_by_file
from cnnlab.models.tta import probs_and_loss
from cnnlab.models.tta import views as tta_views
from cnnlab.settings import TrainConfig
from cnnlab.settings_file import apply_resumed
from cnnlab.train import autorecipe, distributed, fingerprint, rundir
from cnnlab.train.callbacks import default_callbacks
from cnnlab.train.events import Callback, FitContext
from cnnlab.train.loggers import tracking_callbacks
from cnnlab.train.setup import model_image_size
from cnnlab.train.trainer import FitResult, Trainer
from cnnlab.urls import mask_values


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    config: TrainConfig
    metrics: dict
    history: list[dict]
    best_epoch: int
    stopped_early: bool
    train_seconds: float
    resolved: dict = field(default_factory=dict)

    def load(self, which: str = "best") -> Predictor:
        """The trained model (best.pt by default)."""
        return Predictor.load(self.run_dir / f"{which}.pt", model=self.config.model)

    @property
    def model(self) -> Predictor:
        """The best model of the run."""
        return self.load("best")

    def __repr__(self) -> str:
        """One line: folder, model, best epoch and the final accuracy."""
        from cnnlab.evaluate.notebook import short_summary

        acc = short_summary(self.metrics)
        return (f"RunResult({str(self.run_dir)!r}, model={self.config.model!r}, best_epoch="
                f"{self.best_epoch}{', ' + acc if acc else ''})")

    def _repr_html_(self) -> str:
        """Jupyter: metrics table, learning curves and confusion matrix inline."""
        from cnnlab.evaluate.notebook import run_html

        facts = [("run folder", str(self.run_dir)), ("model", self.config.model),
                 ("epochs", f"{len(self.history)}, best {self.best_epoch}"
                  + (" (stopped early)" if self.stopped_early else ""))]
        return run_html(self.run_dir, self.metrics, f"cnnlab run {self.run_dir.name}", facts)


def load_options(cfg: TrainConfig) -> LoadOptions:
    """Data options of a run; the model decides the default decode size of image files."""
    opts = settings.data_options(cfg.to_dict())
    opts.default_image_size = model_image_size(cfg) or 64
    return opts


def resolve_data(cfg: TrainConfig) -> None:
    """Make cfg.data absolute so the saved settings mean the same from any working folder."""
    if cfg.data is not None:
        cfg.data = str(Path(cfg.data).expanduser().resolve())


def load_splits(cfg: TrainConfig, verbose: bool = True) -> DataSplits:
    """Read and split the configured data (the decode cache makes a second read instant)."""
    resolve_data(cfg)
    return load_data(cfg.data, load_options(cfg), data_progress(verbose))


def train(given: Mapping[str, Any] | None = None, *, resume: bool = False,
          resume_from: str | Path | None = None, force: bool = False,
          splits: DataSplits | None = None, verbose: bool = True,
          callbacks: list[Callback] | None = None, trust_code: bool = False) -> RunResult:
    """Validate the given settings, then train: what `cnnlab train`, `cnnlab.train` and the
    estimator all call. `given` holds only what the user set; the rest are the defaults (or,
    when resuming, the run's saved settings; `trust_code` lets a custom model they name be
    imported without naming it again)."""
    given = dict(given or {})
    if given.get("data") is not None:
        given["data"] = str(given["data"])
    if resume or resume_from:
        cfg, changes = resume_settings(given, resume_from, trust_code)
    else:
        cfg, changes = settings.resolve(given), {}
    return run_training(cfg, resume=resume_from or resume, force=force, splits=splits,
                        verbose=verbose, callbacks=callbacks, changes=changes)


def run_training(cfg: TrainConfig, resume: bool | str | Path = False, force: bool = False,
                 splits: DataSplits | None = None, verbose: bool = True,
                 callbacks: list[Callback] | None = None, changes: dict | None = None
                 ) -> RunResult:
    """Train a validated config and write the complete run folder.

    `resume` is True (the run's last.pt) or a checkpoint path. Under torchrun every rank runs
    this; rank 0 alone picks the folder, writes and prints.
    """
    distributed.init_from_env(resolve_device(cfg.device))  # no-op unless started by torchrun
    verbose = verbose and distributed.is_main()
    t_load = t_run = time.perf_counter()
    if splits is None:
        with distributed.local_main_first():  # one decode per machine fills the cache
            splits = load_splits(cfg, verbose)
    load_s = time.perf_counter() - t_load
    check_against_data(cfg, splits)
    base = cfg.name or f"{splits.source or 'data'}-{cfg.model}"
    ckpt = None
    if resume and cfg.out is not None:
        ckpt = Path(cfg.out) / "last.pt" if resume is True else Path(resume)
    resuming = ckpt is not None and ckpt.is_file()

    taken_at = time.time()  # files changed since then are this run's (its manifest)

    def make_run_dir() -> tuple[Path, bool]:
        if resume and cfg.out is not None:  # the folder being resumed (or restarted)
            run_dir = Path(cfg.out)
            rundir.remove_stale_temps(run_dir)
            rundir.adopt(run_dir)
            return run_dir, False
        run_dir = rundir.choose_run_dir(cfg.out, cfg.runs_dir, base, False, force)
        return run_dir, True

    # A resume on other data is refused before anything is printed or written.
    old_note = fingerprint.check_resume(ckpt, splits) if resuming and distributed.is_main() \
        else None
    run_dir, created = distributed.on_main(make_run_dir)  # chosen once, by rank 0
    cfg.out = str(run_dir)

    def record() -> None:
        if distributed.is_main():
            rundir.record_outputs(run_dir, taken_at)

    if verbose:
        sizes = ", ".join(f"{n} {len(s)}" for n, s in splits.items())
        c, (h, w) = splits.train.channels, splits.train.image_size
        console.print(f"[bold]cnnlab[/] {'resuming' if resuming else 'training'} [cyan]"
                      f"{cfg.model}[/] on {splits.source or 'data'} ({sizes}; {c}x{h}x{w}, "
                      f"{splits.train.num_classes} classes; loaded in {load_s:.1f}s) -> {run_dir}")
        if splits.split_note:
            console.print(f"  splits: {splits.split_note}", highlight=False)
        if old_note:
            console.print(f"[yellow]  {old_note}[/]", highlight=False)
    stats = train_stats(splits) if distributed.is_main() else {}
    if verbose and stats:
        console.print(f"  train mean {_fmt(stats['mean'])} std {_fmt(stats['std'])} (0..1) = mean "
                      f"{_fmt(stats['mean_255'], 3)} std {_fmt(stats['std_255'], 3)} (0..255)",
                      highlight=False)
    # --recipe fast: its data choices (a copy of cfg; config.yaml keeps the settings as asked)
    run_cfg, plan = autorecipe.prepare(cfg, splits, recorded_recipe(run_dir) if resume else None)
    try:  # callbacks of run_cfg: the recipe may switch --ema off for a short run
        trainer = Trainer(run_cfg, splits, run_dir, resume=ckpt if resuming else False,
                          verbose=verbose, callbacks=callback_list(run_cfg, verbose, callbacks))
        autorecipe.finish(trainer, plan)  # the range test, when the recipe picks the lr
    except BaseException:
        if created and distributed.is_main():  # nothing of this run exists yet: leave no trace
            rundir.release_if_unused(run_dir)
        raise
    if verbose and plan is not None:
        for line in plan.lines():
            console.print(f"  {line}", highlight=False, markup=False)
    start = RunStart(t_run, load_s, stats)  # finalize records the stats and phase times
    if verbose:
        console.print(f"  {normalization_line(cfg, trainer.model, stats)}", highlight=False)
    if distributed.is_main():
        write_config(run_dir, cfg, trainer, resuming, changes or {})
        if cfg.doctor and not resuming:
            run_data_doctor(cfg, splits, run_dir, verbose)
        record()
    if verbose:
        for note in trainer.notes:  # transfer learning: what was loaded, re-initialised, frozen
            console.print(f"  [dim]{note}[/]", highlight=False)
    try:
        fit = trainer.fit()
        metrics = finalize(trainer, fit, verbose, start) if distributed.is_main() else {}
    except BaseException as exc:
        trainer.emit("on_run_end", None, exc)  # trackers mark their run failed or killed
        with contextlib.suppress(OSError):  # never hide the error with one of the manifest
            record()
        raise
    trainer.emit("on_run_end", metrics, None)  # the folder is complete: trackers upload it
    record()
    distributed.barrier()  # every rank returns once the run folder is complete
    return RunResult(run_dir, cfg, metrics, fit.history, fit.best_epoch, fit.stopped_early,
                     fit.loop_seconds, dict(trainer.resolved))


def callback_list(cfg: TrainConfig, verbose: bool, given: list[Callback] | None = None
                  ) -> list[Callback]:
    """Every callback of a run, in the order they run: the loop's defaults (the recipe's
    included), the live plot, the trackers, then the given ones; a given callback whose `name`
    is one of those takes its place instead (a user's own early stopping, say)."""
    cbs = [*default_callbacks(cfg, verbose), LivePlot(), *tracking_callbacks(cfg)]
    at = {cb.name: i for i, cb in enumerate(cbs) if getattr(cb, "name", None)}
    for cb in given or []:
        name = getattr(cb, "name", None)
        if name in at:
            cbs[at[name]] = cb
        else:
            cbs.append(cb)
    return cbs


def train_stats(splits: DataSplits) -> dict:
    """Per-channel mean/std of the training split, on 0..1 and on 0..255 (EECS 445 reports
    0..255), whatever --normalize uses."""
    if not len(splits.train):
        return {}
    from cnnlab.data.stats import channel_mean_std

    mean, std = channel_mean_std(splits.train.images)
    return {"mean": [round(m, 6) for m in mean], "std": [round(v, 6) for v in std],
            "mean_255": [round(m * 255, 3) for m in mean],
            "std_255": [round(v * 255, 3) for v in std]}


def normalization_line(cfg: TrainConfig, model: torch.nn.Module, stats: dict) -> str:
    """The input normalization the model applies (its own mean/std buffers), and why."""
    mean, std = (getattr(model, k, None) for k in ("mean", "std"))
    if mean is None or std is None:
        return "normalize: none (the model takes 0..1 inputs as they are)"
    mean, std = mean.flatten().tolist(), std.flatten().tolist()
    same = bool(stats) and all(abs(a - b) < 1e-5 for a, b in zip(
        mean + std, stats["mean"] + stats["std"], strict=False))
    if cfg.normalize == "auto" and same:
        return "normalize: with the training split's mean and std above"
    why = f"--normalize {cfg.normalize}" if cfg.normalize != "auto" else \
        "ImageNet's, for the pretrained weights" if cfg.pretrained or cfg.weights_file else \
        "from the --init-from checkpoint"
    return f"normalize: mean {_fmt(mean)} std {_fmt(std)} (0..1; {why})"


def _fmt(values: list[float], digits: int = 4) -> str:
    return "[" + " ".join(f"{v:.{digits}f}" for v in values) + "]"


def run_data_doctor(cfg: TrainConfig, splits: DataSplits, run_dir: Path, verbose: bool) -> None:
    """`train --doctor`: the data checks of `cnnlab doctor`, written into the run folder."""
    from cnnlab.doctor import run_doctor, summary_line
    from cnnlab.doctor.pool import source_root

    opts = load_options(cfg)
    root = source_root(Path(cfg.data) if cfg.data else None, splits.train.meta.get("format")
                       or cfg.format, cfg.image_dir)
    report = run_doctor(splits, opts, out=run_dir / "doctor", seed=cfg.seed, root=root,
                        verbose=verbose)
    if verbose:
        console.print(f"{summary_line(report['summary'])} -> "
                      f"{run_dir / 'doctor' / 'doctor.html'}", markup=False, highlight=False)


def check_against_data(cfg: TrainConfig, splits: DataSplits) -> None:
    """Settings that can only be checked once the classes are known (before any folder)."""
    settings.check_positive_class(cfg.positive_class, list(splits.classes))


def write_config(run_dir: Path, cfg: TrainConfig, trainer: Trainer, resuming: bool,
                 changes: dict) -> None:
    """config.yaml: the settings as first asked, what they resolved to, and every resume with
    the settings it changed (never overwriting what ran)."""
    path = run_dir / "config.yaml"
    if resuming and path.is_file():
        doc = io.read_yaml(path)
        doc.setdefault("resumed", []).append({
            "at_epoch": trainer.state.epoch, "at_step": trainer.state.global_step,
            "changed": {k: list(v) for k, v in changes.items()},
            "resolved": dict(trainer.resolved)})
    else:
        doc = {**cfg.to_dict(), "resolved": dict(trainer.resolved)}
    # No secrets in the run folder: a --track-uri password becomes *** (give it again on resume).
    io.write_yaml(path, mask_values(doc))


def recorded_recipe(run_dir: Path) -> dict | None:
    """What the recipe chose when the run started (config.yaml `resolved: recipe:`), which a
    resumed run applies again instead of choosing anew."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return None
    got = (io.read_yaml(path).get("resolved") or {}).get("recipe")
    return got if isinstance(got, dict) else None


def saved_settings(run_dir: Path) -> TrainConfig:
    """The settings a run is using now: config.yaml as first asked plus each resume's changes."""
    path = run_dir / "config.yaml"
    doc = apply_resumed(io.read_yaml(path), path)
    cfg = TrainConfig.from_dict(settings.check_saved(doc, path))
    cfg.out = str(run_dir)  # the folder being resumed, even if it was moved or copied
    return cfg


def resume_settings(given: dict, resume_from: str | Path | None, trust_code: bool = False
                    ) -> tuple[TrainConfig, dict]:
    """The saved settings of the run to continue, with the given ones checked against them.

    Settings that may change on resume (epochs, patience, threads, device, ...) are applied
    and returned as changes {name: (old, new)}; any other one that differs is refused. A custom
    model the saved settings name is imported only when the user names it again (--model) or
    trusts the file (`trust_code`)."""
    if resume_from is not None:
        ckpt = Path(resume_from).expanduser()
        if not ckpt.is_file():
            raise CnnlabError(f"--resume-from {ckpt}: no such checkpoint")
        run_dir = ckpt.parent
    elif given.get("out") is not None:
        run_dir = Path(given["out"]).expanduser()
    else:
        run_dir = rundir.choose_run_dir(None, given.get("runs_dir", "runs"),
                                        given.get("name") or "", True)
    if not (run_dir / "config.yaml").is_file():
        raise CnnlabError(f"{run_dir}: nothing to resume (no config.yaml); start a new run")
    saved = saved_settings(run_dir)
    if ":" in saved.model:  # a custom builder: imported only when named again or trusted
        named = given.get("model") if given.get("model") == saved.model else None
        spec_named_by_file(saved.model, run_dir / "config.yaml", named, trust_code)
    checked = settings.check_values({k: v for k, v in given.items() if v is not None})
    if checked.get("data") is not None:
        checked["data"] = str(Path(checked["data"]).expanduser().resolve())
    changes = {}
    for key, value in checked.items():
        old = getattr(saved, key, None)
        ran = _ran_value(run_dir, key) if old is None else old  # None saved: the default ran
        if key in ("out", "extra") or _same(old, value) or _same(ran, value):
            continue
        if key not in settings.RESUMABLE:
            flag = "PATH" if key == "data" else settings.SETTINGS[key].flag
            may = ", ".join(settings.SETTINGS[k].flag for k in sorted(settings.RESUMABLE)
                            if k in settings.SETTINGS and settings.SETTINGS[k].cli)
            was = repr(old) if old is not None else \
                f"{ran!r} (its default)" if ran is not None else "default"
            raise settings.SettingsError(
                f"--resume: {flag} {value!r} differs from the run's {was}; a resumed run keeps "
                f"its settings (only {may} may change): drop the option or start a new run")
        changes[key] = (old, value)
        setattr(saved, key, value)
    settings.check_combination(saved)
    if resume_from is None and not (run_dir / "last.pt").is_file() and distributed.is_main():
        console.print(f"[yellow]{run_dir}: no checkpoint was saved before it stopped; starting "
                      "it again from epoch 1 with its saved settings[/]")
    return saved, changes


def _ran_value(run_dir: Path, key: str) -> object:
    """The value a setting saved as None (its default) resolved to when the run last ran:
    config.yaml's latest `resolved:` (lr, device, precision, value_range, ...), else None."""
    doc = io.read_yaml(run_dir / "config.yaml")
    resumed = doc.get("resumed") if isinstance(doc.get("resumed"), list) else []
    name = {"threads": "num_threads"}.get(key, key)
    for entry in [*reversed(resumed), doc]:
        got = entry.get("resolved") if isinstance(entry, dict) else None
        if isinstance(got, dict) and got.get(name) is not None:
            return got[name]
    return None


def _same(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


class LivePlot(Callback):
    """A curve a person can watch during long runs (EECS 553's live plot): plots/curves.png is
    redrawn every `every` seconds of training, whatever the epoch length (mid-epoch too, with
    the running train numbers as a fractional epoch); runs shorter than that draw only at the
    end (finalize), so drawing never costs more than a few percent of training."""

    name = "live_plot"

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self._last = time.perf_counter()

    def on_fit_start(self, ctx: FitContext) -> None:
        """Count from the first step."""
        self._last = time.perf_counter()

    def on_step_end(self, ctx: FitContext, loss: float) -> None:
        """Redraw when `every` seconds have passed since the last drawing."""
        if time.perf_counter() - self._last >= self.every and distributed.is_main():
            self.draw(ctx)

    def draw(self, ctx: FitContext) -> None:
        """Draw plots/curves.png from the finished epochs plus the running one."""
        from cnnlab.report.plots import plot_curves

        s, r = ctx.state, ctx.state.running
        rows = list(s.history)
        if r["n"] and s.step_in_epoch:
            rows.append({"epoch": s.epoch + s.step_in_epoch / max(ctx.steps_per_epoch, 1),
                         "train_loss": r["loss"] / r["n"], "train_acc": r["correct"] / r["n"],
                         "val_loss": None, "val_acc": None})
        if rows:
            plot_curves(rows, ctx.run_dir / "plots" / "curves.png",
                        f"{ctx.cfg.model} on {ctx.splits.source or 'data'} (live)")
        self._last = time.perf_counter()


def exported_model(trainer: Trainer, best: object) -> object:
    """The best model as the feature pass's exported backbone plus the best head, for the
    report's forward passes; None when torch computed the features."""
    features = trainer.features
    if features is None or features.exported is None:
        return None
    from cnnlab.models.feature_engine import HeadOnFeatures
    from cnnlab.train.transfer import head_of

    return HeadOnFeatures(features.exported, head_of(best.module.net).eval())


@dataclass
class RunStart:
    """What run_training knows before fit and finalize records: when the run began, the data
    load's seconds and the training split's pixel statistics."""

    t_run: float  # time.perf_counter() at the start of the run
    load_seconds: float
    data_stats: dict


def finalize(trainer: Trainer, fit: FitResult | None = None, verbose: bool = True,
             start: RunStart | None = None) -> dict:
    """Evaluate the best checkpoint on every split; write metrics.json, plots, predictions.
    `fit` is what trainer.fit() returned (None: the trainer's result so far); `start`, what
    run_training measured before it (None: no phase times or data statistics)."""
    from cnnlab.report.plots import plot_confusion, plot_curves

    fit = fit if fit is not None else trainer.result()
    run_dir, splits, cfg = trainer.run_dir, trainer.splits, trainer.cfg
    title = f"{cfg.model} on {splits.source or 'data'}"
    t_final = time.perf_counter()
    # "auto" picks bf16 for training speed; the final figures are measured in float32, as
    # `cnnlab evaluate` measures them, so both report the same numbers.
    best = Predictor.load(run_dir / "best.pt", device=str(trainer.device),
                          precision=trainer.eval_precision, model=trainer.cfg.model)
    # Every split is scored once; predictions.csv and the report reuse these probabilities.
    # A frozen backbone's features are cached: the best head scores them (no second pass).
    with busy("scoring the best checkpoint on every split", verbose):
        logits = score_splits(trainer, best)
    labels = {n: d.labels for n, d in splits.items()}
    calibration = calibrate_run(run_dir / "best.pt", best, logits, labels) if cfg.calibrate \
        else None
    probs = {n: probs_and_loss(z, labels[n], best.temperature) for n, z in logits.items()}
    metrics: dict = {}
    for name, data in splits.items():
        if name in probs and (data.labels >= 0).any():
            p, loss = probs[name]
            metrics[name] = compute_metrics(data.labels.numpy(), p, list(data.classes), loss,
                                            cfg.positive_class or None)
    tv_name = "test" if splits.test is not None else "val"
    test_or_val = splits.get(tv_name)
    if test_or_val is not None:
        metrics["baselines"] = baselines(splits.train.labels.numpy(),
                                         test_or_val.labels.numpy(), len(splits.classes))
    if best.tta != "none":
        metrics["tta"] = {"views": best.tta, "n_views": len(tta_views(best.tta))}
    if calibration is not None:
        metrics["calibration"] = calibration
    metrics["best_epoch"] = fit.best_epoch
    metrics["epochs_run"] = fit.epochs_run
    metrics["stopped_early"] = fit.stopped_early
    # The frozen-backbone feature pass is part of training time; both parts are kept.
    metrics["train_seconds"] = round(fit.loop_seconds + fit.feature_seconds, 3)
    metrics["loop_seconds"] = round(fit.loop_seconds, 3)
    metrics["feature_seconds"] = fit.feature_seconds
    metrics["resolved"] = dict(fit.resolved)
    if start is not None and start.data_stats:
        metrics["train_stats"] = start.data_stats
    metrics["skipped_bad_images"] = int(splits.train.meta.get("skipped_bad_images", 0))
    if fit.notes:
        metrics["notes"] = list(fit.notes)
    if fit.transfer:
        metrics["transfer"] = fit.transfer
    io.write_json(run_dir / "metrics.json", metrics)
    # extra["plots"] = False: the scikit-learn estimator fits many tiny models; figures would
    # cost more than the training itself.
    if cfg.extra.get("plots", True):
        plot_curves(fit.history, run_dir / "plots" / "curves.png", title)
        final_split = "test" if "test" in metrics else "val" if "val" in metrics else "train"
        plot_confusion(metrics[final_split]["confusion_matrix"], splits.classes,
                       run_dir / "plots" / "confusion_matrix.png",
                       f"Confusion matrix ({final_split})")
        if cfg.eval_every:
            from cnnlab.report.step_curves import plot_step_curves

            plot_step_curves(run_dir / "steps.csv", run_dir / "plots" / "curves_steps.png",
                             f"{title}, by step")
    if test_or_val is not None:
        write_predictions(run_dir / "predictions.csv", test_or_val.ids, probs[tv_name][0],
                          splits.classes)
    report_s = 0.0
    if cfg.report:
        from cnnlab.report.html import build_report

        t_report = time.perf_counter()
        with busy("writing report.html (failures, Grad-CAM, robustness)", verbose):
            build_report(run_dir, splits=splits, predictor=best,
                         probs={n: p for n, (p, _) in probs.items()},
                         precision=trainer.precision, exported=exported_model(trainer, best))
        report_s = time.perf_counter() - t_report
    phases = run_phases(start, fit, time.perf_counter() - t_final - report_s, report_s)
    if phases:
        metrics["phases"] = phases
        io.write_json(run_dir / "metrics.json", metrics)
    if verbose:
        summary = "  ".join(f"{n} acc {m['accuracy']:.4f}" for n, m in metrics.items()
                            if isinstance(m, dict) and m.get("accuracy") is not None)
        console.print(f"[bold green]done[/] best epoch {fit.best_epoch}: {summary}")
        console.print(f"run folder: {run_dir}")
        if cfg.report:
            console.print(f"report: {run_dir / 'report.html'}")
        if phases:
            console.print(phases_line(phases), highlight=False)
    return metrics


PHASE_NAMES = {"load": "load", "features": "features", "train": "train",
               "finish": "scoring+plots", "report": "report", "other": "other"}


def run_phases(start: RunStart | None, fit: FitResult, finish_s: float, report_s: float
               ) -> dict:
    """Seconds of each phase of the run (load, backbone features, training loop, final scoring
    and plots, report, the rest) and the whole; {} without `start` (a finalize not called by
    run_training: the phases before it are unknown)."""
    if start is None:
        return {}
    total = time.perf_counter() - start.t_run
    # this command's part of the training loop: a resumed run's earlier sessions ran before
    # `total` began
    out = {"load": start.load_seconds, "features": fit.feature_seconds,
           "train": fit.loop_seconds - fit.resumed_seconds, "finish": finish_s,
           "report": report_s}
    out["other"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    return {k: round(v, 2) for k, v in out.items()}


def phases_line(phases: dict) -> str:
    """'phases: load 9.2 s, features 12.3 s, ...; total 30.1 s (report 9%)'."""
    parts = ", ".join(f"{PHASE_NAMES[k]} {phases[k]:.1f} s" for k in PHASE_NAMES
                      if k in phases and (phases[k] or k in ("train", "report")))
    share = 100 * phases.get("report", 0.0) / max(phases.get("total", 0.0), 1e-9)
    return f"phases: {parts}; total {phases.get('total', 0.0):.1f} s (report {share:.0f}%)"


def score_splits(trainer: Trainer, best: Predictor) -> dict[str, torch.Tensor]:
    """Logits [V, N, K] of the best checkpoint on every non-empty split, one row per test-time
    view of the run's --tta (V = 1 without)."""
    # cached backbone features are of the plain images: TTA views need the full model
    cached = trainer.cached_logits(best.module.state_dict()) if best.tta == "none" else {}
    return {name: cached[name].unsqueeze(0) if name in cached else best.view_logits(data.images)
            for name, data in trainer.splits.items() if len(data)}


def read_run(run_dir: str | Path) -> dict:
    """config, metrics and history of a finished run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CnnlabError(f"{run_dir}: not a cnnlab run folder (no config.yaml)")
    out = {"config": io.read_yaml(run_dir / "config.yaml")}
    if (run_dir / "metrics.json").is_file():
        out["metrics"] = json.loads((run_dir / "metrics.json").read_text())
    if (run_dir / "metrics.csv").is_file():
        out["history"] = io.read_csv(run_dir / "metrics.csv")
    return out
