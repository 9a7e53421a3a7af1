"""What every variant shares: prepared data, the variant protocol, model-only loops, cnnlab,
evaluation, FLOP counting and the machine's matmul peak."""

from __future__ import annotations

import contextlib
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.cases import WORK, Case
from cnnlab.data.load import LoadOptions, load_data
from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD, channel_mean_std
from cnnlab.device import use_channels_last
from cnnlab.models import build_model
from cnnlab.settings import TrainConfig


@dataclass
class Prepared:
    """The case's data decoded once (for the model-only loops, peers and evaluation)."""

    case: Case
    train_x: torch.Tensor  # uint8 [N,C,H,W]
    train_y: torch.Tensor
    eval_x: torch.Tensor
    eval_y: torch.Tensor
    eval_name: str
    classes: list[str]
    mean: list[float]
    std: list[float]
    train_files: list[Path] | None  # file paths (for the textbook loop on file sources)
    eval_files: list[Path] | None

    @property
    def channels(self) -> int:
        """Image channels."""
        return int(self.train_x.shape[1])

    def normalized(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 normalized like the model expects."""
        m = torch.tensor(self.mean).view(1, -1, 1, 1)
        s = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x.float() / 255.0 - m) / s


def base_config(case: Case, out: Path, **extra: object) -> TrainConfig:
    """The cnnlab TrainConfig every cnnlab run of this case starts from."""
    cfg = TrainConfig(data=str(case.data), model=case.model, epochs=case.epochs,
                      batch_size=case.batch_size, lr=case.lr, optimizer="adamw", schedule="none",
                      weight_decay=0.0, augment=case.augment, val_split=case.val_split,
                      image_size=case.image_size, out=str(out), report=False, seed=0,
                      num_threads=torch.get_num_threads())  # the bench's count, for all
    for k, v in {**case.cnnlab_settings, **extra}.items():
        setattr(cfg, k, v)
    return cfg


def quiet_load_options(cfg: TrainConfig, use_cache: bool = True) -> LoadOptions:
    """cnnlab's LoadOptions for a config, with or without the decode cache."""
    from cnnlab.run import load_options

    opts = load_options(cfg)
    opts.use_cache = use_cache
    return opts


def prepare(case: Case) -> Prepared:
    """Decode the case's data once with cnnlab's readers (the same split for every variant)."""
    cfg = base_config(case, WORK / "unused")
    splits = load_data(cfg.data, quiet_load_options(cfg, use_cache=False))
    ev_name = "test" if splits.test is not None else "val"
    ev = splits.get(ev_name)
    if case.imagenet_norm:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:
        mean, std = channel_mean_std(splits.train.images)
    files = None
    if case.textbook_source == "files":
        root = Path(case.data)
        files = ([root / i for i in splits.train.ids], [root / i for i in ev.ids])
    return Prepared(case, splits.train.images.contiguous(), splits.train.labels, ev.images,
                    ev.labels, ev_name, list(splits.classes), list(mean), list(std),
                    files[0] if files else None, files[1] if files else None)


def fresh_net(case: Case, prep: Prepared, seed: int = 0) -> nn.Module:
    """The case's network, seeded so every variant starts from the same weights."""
    torch.manual_seed(seed)
    kwargs = {"pretrained": True} if case.pretrained else {}
    net = build_model(case.model, len(prep.classes), prep.channels, case.image_size, **kwargs)
    if case.pretrained:
        freeze_backbone(net)
    return net


def freeze_backbone(net: nn.Module) -> None:
    """Train only the head: everything else requires no grad and stays in eval mode."""
    head = net.head()
    keep = {id(p) for p in head.parameters()}
    for p in net.parameters():
        p.requires_grad_(id(p) in keep)
    net._bench_frozen = True  # type: ignore[attr-defined]


def set_train_mode(net: nn.Module) -> None:
    """train() but a frozen backbone keeps its BatchNorm statistics (eval mode)."""
    net.train()
    if getattr(net, "_bench_frozen", False):
        net.eval()
        net.head().train()


def make_optimizer(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The one optimizer every variant uses: AdamW, no weight decay (cnnlab's setting)."""
    return torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr,
                             weight_decay=0.0)


@torch.inference_mode()
def accuracy(predict: Callable[[torch.Tensor], torch.Tensor], prep: Prepared,
             batch: int = 256) -> float:
    """Accuracy on the eval split; `predict` maps uint8 images to logits."""
    correct = 0
    for s in range(0, len(prep.eval_y), batch):
        logits = predict(prep.eval_x[s:s + batch])
        correct += int((logits.float().argmax(1) == prep.eval_y[s:s + batch]).sum())
    return correct / max(len(prep.eval_y), 1)


@torch.inference_mode()
def head_inputs(net: nn.Module, x: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """What a frozen backbone hands the head for normalized images `x` (computed once, so the
    untimed evaluation of the frozen-backbone variants does not dominate the bench's wall time;
    the frozen part is in eval mode and never changes, so this is exact)."""
    got: list[torch.Tensor] = []
    hook = net.head().register_forward_hook(lambda m, inp, out: got.append(inp[0].detach()))
    was = net.training
    net.eval()
    try:
        for s in range(0, x.shape[0], batch):
            net(x[s:s + batch])
    finally:
        hook.remove()
        if was:
            set_train_mode(net)
    return torch.cat(got)


@torch.inference_mode()
def head_accuracy(net: nn.Module, feats: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of the (trained) head on cached head inputs."""
    head = net.head()
    was = head.training
    head.eval()
    try:
        pred = head(feats).argmax(1)
    finally:
        head.train(was)
    return float((pred == labels).float().mean())


def net_predictor(net: nn.Module, prep: Prepared) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits of a bare network fed normalized float32 (how the textbook/peers feed it)."""
    def predict(x: torch.Tensor) -> torch.Tensor:
        was = net.training
        net.eval()
        try:
            return net(prep.normalized(x))
        finally:
            if was:
                set_train_mode(net)
    return predict


def net_accuracy(net: nn.Module, prep: Prepared, cache: dict) -> float:
    """Eval accuracy of a bare network; frozen backbones are evaluated once (see head_inputs)."""
    if getattr(net, "_bench_frozen", False):
        if "feats" not in cache:
            cache["feats"] = head_inputs(net, prep.normalized(prep.eval_x))
        return head_accuracy(net, cache["feats"], prep.eval_y)
    return accuracy(net_predictor(net, prep), prep)


class Variant:
    """One way of training the case's model; the scheduler calls epoch() round-robin."""

    name = "variant"
    kind = "other"  # limit / cnnlab / textbook / peer
    images_per_epoch = 0
    note = ""
    epochs_budget: int | None = None  # fewer epochs than the case's (None: the case's)

    def setup(self) -> None:
        """Build everything (timed as setup_s)."""

    def epoch(self) -> None:
        """Run one training epoch."""
        raise NotImplementedError

    def accuracy(self) -> float:
        """Eval-split accuracy of the current model."""
        raise NotImplementedError

    def finish(self) -> dict:
        """Tear down; may return extra figures."""
        return {}


class ModelOnly(Variant):
    """forward+backward+step on pre-normalized float tensors already in memory: the limit."""

    kind = "limit"

    def __init__(self, case: Case, prep: Prepared, channels_last: bool = False,
                 bf16: bool = False) -> None:
        self.case, self.prep, self.cl, self.bf16 = case, prep, channels_last, bf16
        tag = "+".join(t for t, on in (("channels_last", channels_last), ("bf16", bf16)) if on)
        self.name = f"model-only {tag or 'fp32 (naive)'}"
        self.images_per_epoch = len(prep.train_y)

    def setup(self) -> None:
        """Normalized float tensors, the seeded network and its optimizer."""
        self.x = self.prep.normalized(self.prep.train_x)
        if self.cl:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.net = fresh_net(self.case, self.prep)
        if self.cl and not use_channels_last(None, torch.device("cpu"), self.net, self.x[:2]):
            # the model's forward cannot take channels_last input (a .view on a feature map)
            self.cl = False
            self.x = self.x.contiguous()
            self.note = "channels_last not possible: the model's forward uses .view()"
        if self.cl:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.net, self.case.lr)
        self.n_epoch = 0
        self._eval: dict = {}

    def epoch(self) -> None:
        """The naive loop (a shuffled index slice per step, nothing else)."""
        g = torch.Generator().manual_seed(1000 + self.n_epoch)
        order = torch.randperm(len(self.prep.train_y), generator=g)
        bs = self.case.batch_size
        set_train_mode(self.net)
        ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if self.bf16 else \
            contextlib.nullcontext
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            x, y = self.x[idx], self.prep.train_y[idx]
            with ctx():
                out = self.net(x)
            loss = F.cross_entropy(out.float(), y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        self.n_epoch += 1

    def accuracy(self) -> float:
        """Eval accuracy (fp32)."""
        return net_accuracy(self.net, self.prep, self._eval)


class CnnlabVariant(Variant):
    """cnnlab's own pipeline: run_training's steps (load, Trainer, fit per epoch, finalize)."""

    kind = "cnnlab"

    def __init__(self, case: Case, prep: Prepared, name: str = "cnnlab", tag: str = "",
                 **settings: object) -> None:
        self.case, self.prep, self.settings = case, prep, settings
        self.name = name
        self.out = WORK / "runs" / f"{case.key}-{tag or 'default'}"
        self.images_per_epoch = len(prep.train_y)

    def setup(self) -> None:
        """Read the source (decode or cache hit) and build the Trainer, as run_training does."""
        from cnnlab.train.trainer import Trainer

        shutil.rmtree(self.out, ignore_errors=True)
        self.cfg = base_config(self.case, self.out, **self.settings)
        t0 = time.perf_counter()
        self.splits = load_data(self.cfg.data, quiet_load_options(self.cfg))
        self.load_s = time.perf_counter() - t0
        self.out.mkdir(parents=True, exist_ok=True)
        self.trainer = Trainer(self.cfg, self.splits, self.out, verbose=False)
        self.ready_s = time.perf_counter() - t0

    def epoch(self) -> None:
        """One more epoch of Trainer.fit (with its validation pass and checkpoint writes)."""
        self.trainer.fit(stop_after=self.trainer.state.epoch + 1)

    def accuracy(self) -> float:
        """Eval accuracy through cnnlab's own batched inference."""
        from cnnlab.models.inference import predict_logits

        t = self.trainer
        if getattr(t, "features", None) is not None and t.features.get(self.prep.eval_name) \
                is not None:
            logits = t.features.logits(self.prep.eval_name)
            return float((logits.argmax(1) == self.prep.eval_y).float().mean())
        logits = predict_logits(t.model, self.prep.eval_x, 256, t.device, t.channels_last,
                                t.autocast)
        return float((logits.argmax(1) == self.prep.eval_y).float().mean())

    def finish(self) -> dict:
        """finalize() as run_training does (metrics.json, plots, predictions); timed."""
        from cnnlab.run import finalize

        t0 = time.perf_counter()
        extra = {"load_s": self.load_s, "ready_s": self.ready_s}
        try:
            finalize(self.trainer, verbose=False)
            extra["finalize_s"] = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001 - reported, never fatal for the benchmark
            extra["finalize_error"] = f"{type(exc).__name__}: {exc}"[:200]
        t = self.trainer
        extra["precision"] = getattr(t, "precision", t.cfg.precision)
        extra["channels_last"] = bool(t.channels_last)
        return extra


class ThreadedFit(Variant):
    """Runs a peer's own blocking fit() in a thread, paused at every epoch end by a callback,
    so its epochs can be interleaved with the other variants'."""

    def __init__(self) -> None:
        self._go = threading.Semaphore(0)
        self._done: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._finished = False

    def run_fit(self) -> None:
        """The peer's fit call (blocking)."""
        raise NotImplementedError

    # called from the peer's epoch-end callback, in the fit thread
    def epoch_ended(self) -> None:
        """Report the epoch and wait until the scheduler asks for the next one."""
        self._done.put(("epoch", None))
        self._go.acquire()

    def _target(self) -> None:
        torch.set_num_threads(self._threads)  # per thread in OpenMP: match the other variants
        try:
            self.run_fit()
            self._done.put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._done.put(("error", exc))
        self._finished = True

    def epoch(self) -> None:
        """Let the fit thread run one epoch; re-raise its errors here."""
        if self._thread is None:
            self._threads = torch.get_num_threads()
            self._thread = threading.Thread(target=self._target, daemon=True)
            self._thread.start()
        else:
            self._go.release()
        kind, exc = self._done.get()
        if kind == "error":
            raise exc
        if kind == "end":
            raise RuntimeError(f"{self.name}: fit ended before the requested epoch")

    def finish(self) -> dict:
        """Let fit return and join the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._go.release()
            self._thread.join(timeout=120)
        return {}


# ---- FLOPs and the machine's peak -------------------------------------------------------------


def train_flops_per_image(case: Case, prep: Prepared) -> float:
    """FLOPs of one training step (forward + backward) per image, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    net = fresh_net(case, prep)
    set_train_mode(net)
    x = prep.normalized(prep.train_x[: min(8, len(prep.train_x))])
    counter = FlopCounterMode(display=False)
    with counter:
        out = net(x)
        F.cross_entropy(out, prep.train_y[: x.shape[0]]).backward()
    return counter.get_total_flops() / x.shape[0]


def matmul_peak(seconds: float = 1.5, n: int = 1024) -> dict[str, float]:
    """Best measured GFLOP/s of an n x n matmul in fp32 and bf16 (alternated, best of rounds)."""
    best = {"fp32": 0.0, "bf16": 0.0}
    mats = {k: (torch.randn(n, n).to(dt), torch.randn(n, n).to(dt))
            for k, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for k, (a, b) in mats.items():
            t0 = time.perf_counter()
            for _ in range(4):
                torch.mm(a, b)
            dt = time.perf_counter() - t0
            best[k] = max(best[k], 4 * 2 * n ** 3 / dt / 1e9)
    return best


def load_average() -> str:
    """1/5/15-minute load average (a sign of other work on the machine)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def np_seed(seed: int) -> np.random.Generator:
    """A numpy generator for the per-sample transforms."""
    return np.random.default_rng(seed)
