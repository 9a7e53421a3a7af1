"""The training loop: read it top to bottom like a textbook script, with the chores handled."""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.checkpoint import load_checkpoint, save_checkpoint
from cnnlab.console import busy
from cnnlab.data.augment import build_augment
from cnnlab.data.batches import batch_slices, to_float
from cnnlab.data.imageset import DataSplits
from cnnlab.device import (
    autocast,
    grad_scaler,
    resolve_device,
    resolve_precision,
    set_threads,
    use_channels_last,
)
from cnnlab.errors import CnnlabError, TrainingError
from cnnlab.models.feature_engine import engine_for
from cnnlab.models.inference import evaluate_logits, predict_logits
from cnnlab.models.record import load_state
from cnnlab.settings import TrainConfig
from cnnlab.train import distributed
from cnnlab.train.callbacks import default_callbacks
from cnnlab.train.events import Callback, FitContext
from cnnlab.train.features import (
    FeatureCache,
    feature_keys,
    precision_name,
    should_cache,
    store_precision,
)
from cnnlab.train.fingerprint import data_fingerprint
from cnnlab.train.mixing import Mixed, Targets, batch_loss, build_mixer, hard_labels
from cnnlab.train.optim import LrParams, lr_factor, onecycle_momentum, set_momentum
from cnnlab.train.sampling import SAMPLERS
from cnnlab.train.setup import (
    build_classifier,
    class_weight_tensor,
    make_optimizer,
    param_groups,
)
from cnnlab.urls import mask_values


class Interrupted(CnnlabError):
    """Training was stopped by Ctrl-C after saving a checkpoint."""

    exit_code = 130


@dataclass
class TrainState:
    """Everything that changes during training and is restored by --resume."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # batches done in the current (incomplete) epoch
    global_step: int = 0
    best_epoch: int = 0  # the epoch best.pt holds (FitContext.mark_best)
    history: list[dict] = field(default_factory=list)
    running: dict = field(default_factory=lambda: {"loss": 0.0, "correct": 0, "n": 0})
    elapsed: float = 0.0
    stopped_early: bool = False  # FitContext.request_stop: no further epoch


@dataclass
class FitResult:
    """What fit() hands to finalize: the outcome of the loop, not the loop's insides."""

    history: list[dict]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    loop_seconds: float  # the training loop alone (+ --recipe fast's range test), all sessions
    feature_seconds: float  # the frozen backbone's one feature pass
    resolved: dict
    notes: list[str]
    transfer: dict | None
    resumed_seconds: float = 0.0  # of loop_seconds, those of the sessions before a --resume


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CPU/GPU allocation failures (torch.OutOfMemoryError, MemoryError, ...)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "out of memory" in text or "can't allocate memory" in text or \
        "failed to allocate" in text


def out_of_memory_error(batch_size: int, epoch: int, step: int) -> TrainingError:
    """One line: the batch that did not fit and the batch size to try instead."""
    smaller = max(1, batch_size // 2)
    hint = f"try --batch-size {smaller}" if batch_size > 1 else "try a smaller --image-size " \
        "or model"
    return TrainingError(f"out of memory on a batch of {batch_size} images (epoch {epoch}, step "
                         f"{step}); {hint}")


def _use_deterministic() -> None:
    # torch.use_deterministic_algorithms imports the whole compiler stack (~5 s) just to set an
    # inductor flag; the C++ switch alone does the same job.
    if not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(True, warn_only=True)


def _plain(v: object) -> object:
    """Tuples and numpy numbers as YAML-friendly lists and floats."""
    return [float(x) for x in v] if isinstance(v, (tuple, list)) else v


class Trainer:
    """Fits a classifier on DataSplits; callbacks write checkpoints, logs and progress."""

    def __init__(self, cfg: TrainConfig, splits: DataSplits, run_dir: Path | None,
                 resume: bool | str | Path = False, verbose: bool = True,
                 callbacks: list[Callback] | None = None) -> None:
        self.cfg, self.splits, self.verbose = cfg, splits, verbose
        self.run_dir = Path(run_dir) if run_dir is not None else None
        set_threads(cfg.num_threads)
        if cfg.deterministic:
            _use_deterministic()
        torch.manual_seed(cfg.seed)
        self.device = resolve_device(cfg.device)
        distributed.init_from_env(self.device)  # no-op unless started by torchrun
        self._build_model()
        self._build_step()
        self.state = TrainState()
        self.resumed_seconds = 0.0  # training seconds of earlier sessions (set by a --resume)
        self.steps_per_epoch = len(batch_slices(len(splits.train), self.step_batch))
        # --steps N replaces --epochs: enough epochs to hold N steps, the last one cut short.
        self.total_steps = cfg.steps or cfg.epochs * self.steps_per_epoch
        self.total_epochs = math.ceil(cfg.steps / max(self.steps_per_epoch, 1)) if cfg.steps \
            else cfg.epochs
        self._resume_rng = None
        self._callback_state: dict = {}
        self._fingerprint: dict | None = None
        if resume:
            ckpt_path = self.run_dir / "last.pt" if resume is True else Path(resume)
            # Rank 0 reads the checkpoint and hands it to the others (no shared disk needed).
            self._restore(distributed.on_main(lambda: load_checkpoint(ckpt_path)), ckpt_path)
        self._cache_features()
        # What the training step calls: wrapped in DistributedDataParallel under torchrun.
        self.train_model = distributed.wrap(self.train_model, self.device,
                                            sync_bn=self.frozen is None)
        self._set_callbacks(callbacks)
        self.resolved = self._resolved()

    def _build_model(self) -> None:
        """The classifier, its frozen part, notes, precision and memory format."""
        cfg, train = self.cfg, self.splits.train
        built = build_classifier(cfg, train)
        self.model, self.arch, self.notes = built.model, built.arch, built.notes
        if train.meta.get("skipped_bad_images"):
            self.notes.append(f"skipped {train.meta['skipped_bad_images']} unreadable "
                              "image(s) (--skip-bad)")
        self.notes += list(train.meta.get("data_notes", []))  # rows used, empty classes
        self.frozen, self.transfer_info = built.frozen, built.info  # see train/transfer.py
        self.model.to(self.device)
        probe = to_float(train.images[:2], self.device) if len(train) else None
        self.channels_last = use_channels_last(cfg.channels_last, self.device, self.model, probe)
        self.precision = resolve_precision(self.device, cfg.precision, self.model,
                                           self.channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.train_model, self.train_images = self.model, train.images

    def _build_step(self) -> None:
        """What one training step uses: optimizer, class weights, augmentation, mixing,
        autocast and gradient scaler."""
        cfg = self.cfg
        self.optimizer = make_optimizer(param_groups(self.model, cfg), cfg)
        cw = class_weight_tensor(cfg, self.splits.train)
        self.class_weight = None if cw is None else cw.to(self.device)
        self.augment = build_augment(cfg.augment)
        self.mixer = build_mixer(cfg)  # --mixup / --cutmix (train/mixing.py)
        if cfg.accumulate > 1 and distributed.is_distributed():
            raise CnnlabError("--accumulate does not work under torchrun yet (the processes' "
                              "micro-batch counts can differ); use a larger --batch-size")
        self.autocast = lambda: autocast(self.device, self.precision)
        # "auto" picks bf16 for training speed; validation is measured in float32, as the final
        # scoring and `cnnlab evaluate` are, so the epoch line and metrics.json agree.
        self.eval_precision = "32" if cfg.precision == "auto" else self.precision
        self.eval_autocast = lambda: autocast(self.device, self.eval_precision)
        self.scaler = grad_scaler(self.device, self.precision)

    def _cache_features(self) -> None:
        """Frozen backbone and no augmentation: run it once per split, then train the head."""
        self.features = None
        if not should_cache(self.cfg, self.frozen):
            return
        # OpenVINO or ONNX Runtime in float32 where installed (the fastest on this CPU, and
        # exactly the float32 features), else torch in the training precision with
        # channels_last where it helps; models/feature_engine.py, docs/performance.md.
        n_all = sum(len(d) for _, d in self.splits.items())
        engine = engine_for(self.device, n_all)
        self.feature_precision = "32" if engine != "torch" else self.precision
        with busy(f"computing backbone features of {n_all} images once ({engine}, "
                  f"{precision_name(self.feature_precision)})", self.verbose):
            f = self.features = FeatureCache(
                self.model, self.splits, self.device, channels_last=self.channels_last,
                autocast=self.autocast, engine=engine,
                keys=feature_keys(self.cfg, self.splits, self.model,
                                  store_precision(engine, self.precision)))
        if f.engine == "torch":  # also when ONNX could not export the model
            self.feature_precision = self.precision
        self.train_model, self.train_images = f.head, f.get("train")
        self.notes.append(
            f"feature cache: backbone features of {f.count} images "
            + (f"read from the feature store ({f.reused} images, {f.seconds:.1f}s)"
               if f.reused == f.count else
               f"computed once ({f.seconds:.1f}s, {f.engine}, "
               f"{precision_name(self.feature_precision)}"
               + (f"; {f.reused} read from the feature store" if f.reused else "") + ")")
            + "; the head trains on them")

    def _set_callbacks(self, callbacks: list[Callback] | None) -> None:
        """The whole list (run.callback_list assembles a run's; None: the loop's defaults),
        the FitContext they see, and the state last.pt kept for them."""
        self.callbacks = default_callbacks(self.cfg, self.verbose) if callbacks is None \
            else list(callbacks)
        self.ctx = FitContext(self, self.callbacks)  # all that callbacks see of this Trainer
        for cb in self.callbacks:
            key = getattr(cb, "state_key", None)
            if key is not None and key in self._callback_state:
                cb.load_state_dict(self._callback_state[key])

    def _resolved(self) -> dict:
        """What the settings resolved to: config.yaml's and metrics.json's `resolved`."""
        out = {"lr": self.cfg.resolved_lr(), "device": str(self.device),
               "precision": self.precision, "eval_precision": self.eval_precision,
               "channels_last": bool(self.channels_last),
               "num_threads": torch.get_num_threads(), "world_size": distributed.world_size(),
               "value_range": _plain(self.splits.train.meta.get("value_range")),
               "feature_cache_seconds": round(self.features.seconds, 3)
               if self.features is not None else 0.0}
        if self.features is not None:  # the precision the cached features were computed in
            out["feature_precision"] = self.feature_precision
            out["feature_engine"] = self.features.engine
            out["feature_store_reused"] = self.features.reused
        return out

    # ---- the loop ------------------------------------------------------------------------
    def fit(self, stop_after: int | None = None) -> FitResult:
        """Train until the epochs (or --steps) run out, a callback requests a stop or epoch
        `stop_after` ends."""
        s = self.state
        with _sigint_flag() as interrupted, self._out_of_memory_as_error():
            self.emit("on_fit_start")
            try:
                while s.epoch < self.total_epochs and not s.stopped_early and \
                        (stop_after is None or s.epoch < stop_after):
                    self.model.train()  # callbacks may set parts back to eval (frozen layers)
                    self.emit("on_epoch_start")
                    t0 = time.perf_counter()
                    for x, y, idx in self.batches(s.epoch, s.step_in_epoch):
                        self.apply_schedule()
                        loss, logits = self.train_step(x, y, idx)
                        self._account(loss, logits, y, idx.shape[0])
                        self.emit("on_step_end", float(loss))
                        if interrupted() or s.global_step >= self.total_steps:
                            break
                    s.elapsed += time.perf_counter() - t0
                    if interrupted():
                        break
                    self.emit("on_epoch_end", self.end_epoch())
            finally:
                for cb in self.callbacks:  # the progress bar must close even on errors
                    getattr(cb, "close", lambda: None)()
        if interrupted():
            self.save("last.pt")
            raise Interrupted(f"interrupted at epoch {s.epoch + 1}, step {s.step_in_epoch}; "
                              f"checkpoint saved. Resume with: cnnlab train --out {self.run_dir}"
                              " --resume")
        self.emit("on_fit_end")
        return self.result()

    def emit(self, event: str, *args: object) -> None:
        """Send `event` with the FitContext to every callback, in order."""
        self.ctx.emit(event, *args)

    def result(self) -> FitResult:
        """The outcome so far (what fit returns; also for a caller that stops fit early)."""
        s = self.state
        return FitResult(list(s.history), s.best_epoch, s.epoch, s.stopped_early, s.elapsed,
                         self.resolved.get("feature_cache_seconds", 0.0), dict(self.resolved),
                         list(self.notes), self.transfer_info, self.resumed_seconds)

    # ---- the pieces the loop (and lr-find) use ---------------------------------------------
    @property
    def step_batch(self) -> int:
        """Images per optimization step: --batch-size times --accumulate."""
        return self.cfg.batch_size * self.cfg.accumulate

    def batches(self, epoch: int, start: int = 0):  # noqa: ANN201 - a generator of 3-tuples
        """(x, y, global indices) of each batch of `epoch` from step `start`, augmented."""
        cfg, labels = self.cfg, self.splits.train.labels
        order = SAMPLERS[cfg.sampler](labels, self.splits.train.num_classes, cfg.seed, epoch)
        slices = batch_slices(self.train_images.shape[0], self.step_batch)
        if start == 0:
            # Other ranks draw other augmentations/dropout masks; rank 0 matches a single process.
            torch.manual_seed((cfg.seed + 1) * 7919 + epoch + 1_000_003 * distributed.rank())
            self.state.running = {"loss": 0.0, "correct": 0, "n": 0}
        elif self._resume_rng is not None:
            torch.set_rng_state(self._resume_rng)
        self._resume_rng = None
        for i in range(start, len(slices)):
            global_idx = order[slices[i]]
            idx = distributed.local_share(global_idx)
            x = to_float(self.train_images[idx], self.device, self.channels_last) \
                if self.features is None else self.train_images[idx].to(self.device)
            y = labels[idx].to(self.device, non_blocking=True)
            if self.augment is not None:
                x = self.augment(x)
            if self.mixer is not None:
                x, y = self.mixer(x, y, epoch, i)
            yield x, y, global_idx

    def train_step(self, x: torch.Tensor, y: Targets, global_idx: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimization step on a batch: (its mean loss, its logits)."""
        if self.cfg.accumulate > 1 and x.shape[0] > self.cfg.batch_size:
            loss, logits = self._accumulate(x, y)
        else:
            world = distributed.world_size()
            with self.autocast():
                logits = self.train_model(x)
                if world == 1:
                    loss = batch_loss(logits, y, self.class_weight, self.cfg.label_smoothing)
                else:
                    loss = self._shared_loss(logits, y, self.splits.train.labels[global_idx],
                                             world)
            if not torch.isfinite(loss):
                raise self._diverged(f"loss became {loss.item()}", self.state.step_in_epoch + 1)
            self.optimizer.zero_grad(set_to_none=True)
            self._backward(loss)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.cfg.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return loss.detach(), logits.detach()

    def _backward(self, loss: torch.Tensor) -> None:
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def _accumulate(self, x: torch.Tensor, y: Targets) -> tuple[torch.Tensor, torch.Tensor]:
        """--accumulate: the step's batch in micro-batches of --batch-size, gradients added up.

        Each micro-batch's loss SUM is divided by the whole batch's count (or class-weight sum),
        so the gradient is the one of the whole batch's mean loss (BatchNorm statistics aside).
        """
        labels = y.y if isinstance(y, Mixed) else y
        w = self.class_weight
        total = float(labels.numel()) if w is None else float(w[labels].sum())
        if isinstance(y, Mixed) and w is not None:
            total = y.lam * total + (1 - y.lam) * float(w[y.y_b].sum())
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, outs = torch.zeros((), device=x.device), []
        for start in range(0, x.shape[0], self.cfg.batch_size):
            sl = slice(start, start + self.cfg.batch_size)
            part = y.chunk(sl) if isinstance(y, Mixed) else y[sl]
            with self.autocast():
                logits = self.train_model(x[sl])
                loss = batch_loss(logits, part, w, self.cfg.label_smoothing, "sum") / \
                    max(total, 1e-12)
            if not torch.isfinite(loss):
                raise self._diverged(f"loss became {loss.item()}", self.state.step_in_epoch + 1)
            self._backward(loss)
            loss_sum += loss.detach()
            outs.append(logits.detach())
        return loss_sum, torch.cat(outs)

    def apply_schedule(self) -> None:
        """Set each group's learning rate for the coming step: warmup, schedule, plateau."""
        cfg = self.cfg
        total = self.total_steps
        marks = tuple(cfg.lr_milestones) if cfg.lr_milestones else None
        params = LrParams(self.steps_per_epoch, cfg.lr_step, marks, cfg.lr_gamma)
        factor = lr_factor(cfg.schedule, self.state.global_step, total, cfg.warmup, params)
        factor *= self.ctx.lr_scale
        for g in self.optimizer.param_groups:
            g["lr"] = g["initial_lr"] * factor
        if cfg.schedule == "onecycle" and cfg.cycle_momentum:
            set_momentum(self.optimizer,
                         onecycle_momentum(self.state.global_step, total, cfg.warmup))

    def current_lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    def _account(self, loss: torch.Tensor, logits: torch.Tensor, y: Targets,
                 n_global: int) -> None:
        s, world = self.state, distributed.world_size()
        y = hard_labels(y)  # a mixed batch: accuracy against its dominant labels
        s.running["loss"] += float(loss) * n_global / world
        s.running["correct"] += int((logits.argmax(1) == y).sum())
        s.running["n"] += int(y.shape[0])
        s.step_in_epoch += 1
        s.global_step += 1

    def end_epoch(self) -> dict:
        """Validate, check for divergence and close the epoch: its metrics.csv row."""
        self.emit("on_train_epoch_end")
        s, r = self.state, self.state.running
        if distributed.is_distributed():
            loss, correct, n = distributed.all_reduce_sum([r["loss"], r["correct"], r["n"]])
            r = {"loss": loss, "correct": int(round(correct)), "n": int(round(n))}
        row = {"epoch": s.epoch + 1, "step": s.global_step, "lr": self.current_lr(),
               "train_loss": r["loss"] / max(r["n"], 1), "train_acc": r["correct"] / max(r["n"], 1),
               "val_loss": None, "val_acc": None, "time_s": round(s.elapsed, 3)}
        val = self.splits.val
        if val is not None and len(val):
            row["val_loss"], row["val_acc"] = self.validate()
        if (row["val_loss"] is not None and not math.isfinite(row["val_loss"])) or \
                not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()
                        if p.requires_grad):  # frozen weights cannot diverge
            # Never save diverged weights over the last good checkpoint.
            raise self._diverged(f"the weights became NaN/inf (val loss {row['val_loss']})",
                                 s.step_in_epoch)
        s.history.append(row)
        s.epoch += 1
        s.step_in_epoch = 0
        return row

    def validate(self) -> tuple[float | None, float]:
        """(loss, accuracy) of the current weights on the validation split."""
        if distributed.is_distributed():
            return self._sharded_val()
        probs, loss = self.evaluate_split("val")
        return loss, float((probs.argmax(1) == self.splits.val.labels.numpy()).mean())

    def evaluate_split(self, name: str) -> tuple[np.ndarray, float | None]:
        """(probabilities, loss) of the current model on a split."""
        data = self.splits.get(name)
        if self.features is not None and self.features.get(name) is not None:
            return evaluate_logits(self.features.logits(name), data.labels, None)
        logits = predict_logits(self.model, data.images, max(256, self.cfg.batch_size),
                                self.device, self.channels_last, self.eval_autocast)
        return evaluate_logits(logits, data.labels, None)

    def cached_logits(self, weights: dict) -> dict[str, torch.Tensor]:
        """Logits of every split whose backbone features are cached, through the head of
        `weights` (a state dict of the model, e.g. best.pt's); the trained weights stay."""
        if self.features is None:
            return {}
        trained = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(weights)
        try:
            return {n: self.features.logits(n) for n, d in self.splits.items()
                    if len(d) and self.features.get(n) is not None}
        finally:
            self.model.load_state_dict(trained)

    # ---- checkpoints -------------------------------------------------------------------
    def _payload(self, include_training: bool = True) -> dict:
        payload = {
            "arch": self.arch, "classes": list(self.splits.classes),
            "model_state": {k: v.detach().cpu().contiguous()
                            for k, v in self.model.state_dict().items()},
            # masked: checkpoints are shared and uploaded (as MLflow artifacts, too)
            "config": mask_values(self.cfg.to_dict()), "resolved": dict(self.resolved),
            "data": self._data_summary(),
        }
        if include_training:
            payload.update({
                "optimizer_state": self.optimizer.state_dict(),
                "scaler_state": self.scaler.state_dict() if self.scaler else None,
                "rng_state": torch.get_rng_state(),
                "train_state": asdict(self.state),
                "callback_state": {cb.state_key: cb.state_dict() for cb in self.callbacks
                                   if getattr(cb, "state_key", None) is not None},
            })
        return payload

    def _data_summary(self) -> dict:
        return {"source": self.splits.source, "split_note": self.splits.split_note,
                "sizes": {n: len(s) for n, s in self.splits.items()},
                "image_size": list(self.splits.train.image_size),
                "channels": self.splits.train.channels,
                "skipped_bad_images": int(self.splits.train.meta.get("skipped_bad_images", 0)),
                "fingerprint": self.fingerprint}

    @property
    def fingerprint(self) -> dict:
        """The data's fingerprint (train/fingerprint.py), computed once."""
        if self._fingerprint is None:
            self._fingerprint = data_fingerprint(self.splits)
        return self._fingerprint

    def save(self, name: str = "last.pt", include_training: bool | None = None) -> None:
        """Atomically write a checkpoint into the run folder (rank 0 only under torchrun);
        with the training state (resumable) for last.pt or when `include_training`."""
        if not distributed.is_main() or self.run_dir is None:
            return
        full = name == "last.pt" if include_training is None else include_training
        save_checkpoint(self.run_dir / name, self._payload(include_training=full),
                        previous_exists=(self.run_dir / name).is_file())

    def _restore(self, ckpt: dict, path: Path) -> None:
        if "train_state" not in ckpt:
            here = [p.name for p in sorted(Path(path).parent.glob("*.pt"))
                    if p.name == "last.pt" or p.name.startswith("epoch_")]
            raise CnnlabError(f"{path}: holds weights only, not the training state; resume from "
                              "last.pt or an epoch_<k>.pt file (--keep-every N)"
                              + (f": here {', '.join(here)}" if here else ""))
        if ckpt.get("arch") != self.arch:
            raise CnnlabError(f"{path}: it was trained with another model or data shape "
                              f"({ckpt.get('arch')}); start a new run instead")
        load_state(self.model, ckpt["model_state"])
        self.optimizer.load_state_dict(ckpt["optimizer_state"])
        if self.scaler and ckpt.get("scaler_state"):
            self.scaler.load_state_dict(ckpt["scaler_state"])
        ts = ckpt["train_state"]
        self.state = TrainState(**{k: ts[k] for k in TrainState.__dataclass_fields__ if k in ts})
        self.resumed_seconds = self.state.elapsed
        self._resume_rng = ckpt.get("rng_state")
        self._callback_state = dict(ckpt.get("callback_state") or {})
        if "best_val_loss" in ts:  # written before early stopping kept its own state
            self._callback_state.setdefault("early_stopping", {
                "best": ts["best_val_loss"], "tiebreak": ts.get("best_tiebreak", math.inf),
                "bad": ts.get("bad_epochs", 0)})

    # ---- failures ------------------------------------------------------------------------
    def _diverged(self, what: str, step: int) -> TrainingError:
        """The one-line NaN/inf stop: where it happened, what is kept, what to try."""
        s = self.state
        last = self.run_dir / "last.pt" if self.run_dir is not None else None
        kept = f"the last good checkpoint {last} (epoch {s.epoch}) is kept" \
            if last is not None and last.is_file() else "no checkpoint was saved yet"
        clip = "" if self.cfg.clip_grad else " or --clip-grad 1.0"
        return TrainingError(f"{what} at epoch {s.epoch + 1}, step {step} (global step "
                             f"{s.global_step + 1}); {kept}. Try a lower learning rate than "
                             f"--lr {self.cfg.resolved_lr():g}, e.g. "
                             f"--lr {self.cfg.resolved_lr() / 10:g}{clip}")

    @contextlib.contextmanager
    def _out_of_memory_as_error(self):  # noqa: ANN202
        try:
            yield
        except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError too
            if not is_out_of_memory(exc):
                raise
            raise out_of_memory_error(self.cfg.batch_size, self.state.epoch + 1,
                                      self.state.step_in_epoch + 1) from None

    def _shared_loss(self, logits: torch.Tensor, y: torch.Tensor, y_global: torch.Tensor,
                     world: int) -> torch.Tensor:
        # DDP averages gradients over ranks; dividing this rank's loss sum by the global
        # (weighted) count times 1/world makes that average the single-process batch mean,
        # even when the ranks' shares differ in size.
        w = self.class_weight
        total = float(y_global.numel()) if w is None else float(w.cpu()[y_global].sum())
        loss_sum = batch_loss(logits, y, w, self.cfg.label_smoothing, "sum")
        return loss_sum * (world / max(total, 1e-12))

    def _sharded_val(self) -> tuple[float | None, float]:
        # Each rank scores a contiguous slice (a view: no copy of a memory-mapped set); the sums
        # are all-reduced, so every rank gets the same numbers and early-stops together.
        val = self.splits.val
        part = torch.tensor_split(torch.arange(len(val)), distributed.world_size())
        mine = part[distributed.rank()]
        loss_sum, correct, mask = 0.0, 0.0, torch.zeros(0, dtype=torch.bool)
        if len(mine):
            sl = slice(int(mine[0]), int(mine[-1]) + 1)
            logits = predict_logits(self.model, val.images[sl], max(256, self.cfg.batch_size),
                                    self.device, self.channels_last, self.eval_autocast)
            labels = val.labels[sl]
            mask = labels >= 0
            if mask.any():
                loss_sum = float(F.cross_entropy(logits[mask], labels[mask], reduction="sum"))
            correct = float((logits.argmax(1) == labels).sum())
        loss_sum, n_labeled, correct = distributed.all_reduce_sum(
            [loss_sum, float(mask.sum()), correct])
        return (loss_sum / n_labeled if n_labeled else None), correct / len(val)


def ctrl_c_honoured() -> bool:
    """False where this process was started with Ctrl-C ignored (`nohup`, `cmd &` in a
    script): Python then leaves SIGINT ignored, and so does cnnlab, in every process."""
    return signal.getsignal(signal.SIGINT) is not signal.SIG_IGN


@contextlib.contextmanager
def _sigint_flag():  # noqa: ANN202
    """Ctrl-C sets a flag the loop checks between steps (so a checkpoint can be saved)."""
    flag = {"set": False}

    def on_sigint(signum, frame):  # noqa: ANN001, ARG001
        flag["set"] = True

    old = None
    try:
        # Under torchrun ranks would stop at different steps and deadlock: there Ctrl-C
        # simply ends the processes and --resume restarts from the last epoch's last.pt.
        # Started with Ctrl-C ignored (`nohup`, `cmd &` in a script): it stays ignored.
        if not distributed.is_distributed() and ctrl_c_honoured():
            old = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not in the main thread (e.g. a notebook worker)
        old = None
    try:
        yield lambda: flag["set"]
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
