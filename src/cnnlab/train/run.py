"""One training run end to end: data, run folder, fit, final metrics, plots, predictions, report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from cnnlab.config import TrainConfig
from cnnlab.console import console
from cnnlab.data.imageset import DataSplits
from cnnlab.data.load import LoadOptions, load_data
from cnnlab.data.sources.csvindex import CsvColumns
from cnnlab.device import resolve_device
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.inference import evaluate_logits
from cnnlab.evaluate.metrics import baselines, compute_metrics
from cnnlab.evaluate.predictor import Predictor, write_predictions
from cnnlab.train import distributed, rundir
from cnnlab.train.setup import model_image_size
from cnnlab.train.trainer import Trainer


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

    def load(self, which: str = "best") -> Predictor:
        """The trained model (best.pt by default)."""
        return Predictor.load(self.run_dir / f"{which}.pt")

    @property
    def model(self) -> Predictor:
        """The best model of the run."""
        return self.load("best")

    def __repr__(self) -> str:
        """One line: folder, model, best epoch and the final accuracy."""
        from cnnlab.report.notebook import short_summary

        acc = short_summary(self.metrics)
        return (f"RunResult({str(self.run_dir)!r}, model={self.config.model!r}, best_epoch="
                f"{self.best_epoch}{', ' + acc if acc else ''})")

    def _repr_html_(self) -> str:
        """Jupyter: metrics table, learning curves and confusion matrix inline."""
        from cnnlab.report.notebook import run_html

        facts = [("run folder", str(self.run_dir)), ("model", self.config.model),
                 ("epochs", f"{len(self.history)}, best {self.best_epoch}"
                  + (" (stopped early)" if self.stopped_early else ""))]
        return run_html(self.run_dir, self.metrics, f"cnnlab run {self.run_dir.name}", facts)


def load_options(cfg: TrainConfig) -> LoadOptions:
    """Data options from a training config; the model decides the default decode size."""
    return LoadOptions(format=cfg.format, image_size=cfg.image_size, channels=cfg.channels,
                       resize=cfg.resize, val_split=cfg.val_split, test_split=cfg.test_split,
                       seed=cfg.seed, task=cfg.task, image_dir=cfg.image_dir,
                       columns=CsvColumns(cfg.path_column, cfg.label_column, cfg.numeric_column,
                                          cfg.partition_column, cfg.task_column),
                       skip_bad=cfg.skip_bad,
                       default_image_size=model_image_size(cfg) or 64)


def data_progress(verbose: bool):  # noqa: ANN201
    """A progress factory for long data reads (decode of image files)."""
    if not verbose:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    def factory(label: str, total: int):  # noqa: ANN202
        if total < 200 or not console.is_terminal:
            return lambda n: None
        bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       console=console, transient=True)
        bar.start()
        task = bar.add_task(label, total=total)
        done = {"n": 0}

        def tick(n: int) -> None:
            done["n"] += n
            bar.update(task, advance=n)
            if done["n"] >= total:
                bar.stop()
        return tick
    return factory


def resolve_data(cfg: TrainConfig) -> None:
    """Make cfg.data absolute so the saved settings mean the same from any working folder."""
    if cfg.data is not None:
        cfg.data = str(Path(cfg.data).expanduser().resolve())


def load_splits(cfg: TrainConfig, verbose: bool = True) -> DataSplits:
    """Read and split the configured data (the decode cache makes a second read instant)."""
    resolve_data(cfg)
    return load_data(cfg.data, load_options(cfg), data_progress(verbose))


def run_training(cfg: TrainConfig, resume: bool = False, force: bool = False,
                 splits: DataSplits | None = None, verbose: bool = True,
                 epochs_override: int | None = None) -> RunResult:
    """Train as configured and write the complete run folder.

    With `resume`, the run's saved config is used (only the epoch count may be raised).
    Under torchrun every rank runs this; rank 0 alone picks the folder, writes and prints.
    """
    distributed.init_from_env(resolve_device(cfg.device))  # no-op unless started by torchrun
    verbose = verbose and distributed.is_main()
    if resume:
        cfg = distributed.on_main(lambda: _saved_config(cfg))
    if epochs_override is not None:
        cfg.epochs = epochs_override
    t_load = time.perf_counter()
    if splits is None:
        with distributed.local_main_first():  # one decode per machine fills the cache
            splits = load_splits(cfg, verbose)
    load_s = time.perf_counter() - t_load
    base = cfg.name or f"{splits.source or 'data'}-{cfg.model}"

    def make_run_dir() -> Path:
        run_dir = rundir.choose_run_dir(cfg.out, cfg.runs_dir, base, resume, force)
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.out = str(run_dir)
        rundir.write_yaml(run_dir / "config.yaml", cfg.to_dict())
        return run_dir

    run_dir = distributed.on_main(make_run_dir)  # chosen once, by rank 0, shared with all
    cfg.out = str(run_dir)
    if verbose:
        sizes = ", ".join(f"{n} {len(s)}" for n, s in splits.items())
        c, (h, w) = splits.train.channels, splits.train.image_size
        console.print(f"[bold]cnnlab[/] {'resuming' if resume else 'training'} [cyan]{cfg.model}"
                      f"[/] on {splits.source or 'data'} ({sizes}; {c}x{h}x{w}, "
                      f"{splits.train.num_classes} classes; loaded in {load_s:.1f}s) -> {run_dir}")
    trainer = Trainer(cfg, splits, run_dir, resume=resume, verbose=verbose)
    if verbose:
        for note in trainer.notes:  # transfer learning: what was loaded, re-initialised, frozen
            console.print(f"  [dim]{note}[/]", highlight=False)
    state = trainer.fit()
    metrics = finalize(trainer, verbose) if distributed.is_main() else {}
    distributed.barrier()  # every rank returns once the run folder is complete
    return RunResult(run_dir, cfg, metrics, state.history, state.best_epoch, state.stopped_early,
                     state.elapsed)


def _saved_config(cfg: TrainConfig) -> TrainConfig:
    """The config of the run being resumed (the given one when the run has none saved)."""
    found = rundir.choose_run_dir(cfg.out, cfg.runs_dir, cfg.name or "", True) if cfg.out \
        else None
    saved = found / "config.yaml" if found else None
    if saved is not None and saved.is_file():
        loaded = TrainConfig.from_dict(yaml.safe_load(saved.read_text()) or {})
        loaded.out = str(found)  # the folder being resumed, even if it was moved or copied
        return loaded
    return cfg


def finalize(trainer: Trainer, verbose: bool = True) -> dict:
    """Evaluate the best checkpoint on every split; write metrics.json, plots, predictions."""
    from cnnlab.report.plots import plot_confusion, plot_curves

    run_dir, splits, cfg = trainer.run_dir, trainer.splits, trainer.cfg
    # "auto" picks bf16 for training speed; the final figures are measured in float32, as
    # `cnnlab evaluate` measures them, so both report the same numbers.
    best = Predictor.load(run_dir / "best.pt", device=str(trainer.device),
                          precision="32" if cfg.precision == "auto" else cfg.precision)
    # Every split is scored once; predictions.csv and the report reuse these probabilities.
    # A frozen backbone's features are cached: the best head scores them (no second pass).
    probs = score_splits(trainer, best)
    metrics: dict = {}
    for name, data in splits.items():
        if name in probs and (data.labels >= 0).any():
            p, loss = probs[name]
            metrics[name] = compute_metrics(data.labels.numpy(), p, list(data.classes), loss,
                                            cfg.positive_class or None)
    test_or_val = splits.test if splits.test is not None else splits.val
    if test_or_val is not None:
        metrics["baselines"] = baselines(splits.train.labels.numpy(),
                                         test_or_val.labels.numpy(), len(splits.classes))
    metrics["best_epoch"] = trainer.state.best_epoch
    metrics["epochs_run"] = trainer.state.epoch
    metrics["stopped_early"] = trainer.state.stopped_early
    metrics["train_seconds"] = round(trainer.state.elapsed, 3)
    metrics["skipped_bad_images"] = int(splits.train.meta.get("skipped_bad_images", 0))
    if trainer.notes:
        metrics["notes"] = list(trainer.notes)
    if getattr(trainer, "transfer_info", None):
        metrics["transfer"] = trainer.transfer_info
    rundir.write_json(run_dir / "metrics.json", metrics)
    # extra["plots"] = False: the scikit-learn estimator fits many tiny models; figures would
    # cost more than the training itself.
    if cfg.extra.get("plots", True):
        plot_curves(trainer.state.history, run_dir / "plots" / "curves.png",
                    f"{cfg.model} on {splits.source or 'data'}")
        final_split = "test" if "test" in metrics else "val" if "val" in metrics else "train"
        plot_confusion(metrics[final_split]["confusion_matrix"], splits.classes,
                       run_dir / "plots" / "confusion_matrix.png",
                       f"Confusion matrix ({final_split})")
    if test_or_val is not None:
        tv_name = "test" if splits.test is not None else "val"
        write_predictions(run_dir / "predictions.csv", test_or_val.ids, probs[tv_name][0],
                          splits.classes)
    if cfg.report:
        from cnnlab.report.html import build_report

        build_report(run_dir, splits=splits, predictor=best,
                     probs={n: p for n, (p, _) in probs.items()})
    if verbose:
        summary = "  ".join(f"{n} acc {m['accuracy']:.4f}" for n, m in metrics.items()
                            if isinstance(m, dict) and m.get("accuracy") is not None)
        console.print(f"[bold green]done[/] best epoch {trainer.state.best_epoch}: {summary}")
        console.print(f"run folder: {run_dir}")
    return metrics


def score_splits(trainer: Trainer, best: Predictor) -> dict[str, tuple[np.ndarray, float | None]]:
    """(probabilities, loss) of the best checkpoint on every non-empty split."""
    if trainer.features is not None:
        trainer.model.load_state_dict(best.module.state_dict())
    out = {}
    for name, data in trainer.splits.items():
        if not len(data):
            continue
        cached = trainer.features is not None and trainer.features.get(name) is not None
        logits = trainer.features.logits(name) if cached else best.logits(data.images)
        out[name] = evaluate_logits(logits, data.labels)
    return out


def read_run(run_dir: str | Path) -> dict:
    """config, metrics and history of a finished run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise CnnlabError(f"{run_dir}: not a cnnlab run folder (no config.yaml)")
    out = {"config": yaml.safe_load((run_dir / "config.yaml").read_text()) or {}}
    if (run_dir / "metrics.json").is_file():
        out["metrics"] = json.loads((run_dir / "metrics.json").read_text())
    if (run_dir / "metrics.csv").is_file():
        out["history"] = rundir.read_csv(run_dir / "metrics.csv")
    return out
