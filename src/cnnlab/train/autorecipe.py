"""--recipe fast's choices from the run's own data: learning rate, augmentation, regularisation.

A recipe with automatic settings (settings.RECIPE_AUTO) decides each of them that the user did
not give, once, when the run starts:

- **lr** (`--lr` not given): a learning-rate range test on the run's own Trainer (its batches,
  augmentation and training step, `train/lrrange.py`; the same test as `cnnlab lr-find`), then
  the rule below; the model, optimizer and random state are put back afterwards, so training
  starts exactly as it would have. Its seconds count as training time. A run under 100
  steps, where the test would be more than a fifth of the run, gets 4x the usual rate.
- **augment, label_smoothing, ema, mixup**: rules from the data's kind and size and the run's
  length (`data_choices`).

Every choice is printed once and recorded in config.yaml under `resolved: recipe:`; a resumed
run applies the recorded values and never tests again, so it continues bit for bit.
"""

from __future__ import annotations

import math
import time
from copy import deepcopy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from cnnlab.choices import OPTIMIZER_LRS
from cnnlab.train.lrrange import centered_mean, range_test, suggest

if TYPE_CHECKING:
    from cnnlab.data.imageset import DataSplits
    from cnnlab.settings import TrainConfig
    from cnnlab.train.trainer import Trainer

# The range test: rates from 1/1000 to 100x the optimizer's usual one (AdamW: 3e-6 .. 0.3),
# stopped early once the loss blows up; a fifth of the run's steps, 20 to 100 of them (its
# time counts as training time, so short runs get a short test).
TEST_FROM, TEST_TO = 1e-3, 100.0
TEST_MAX_STEPS = 100  # at most about one epoch of mnist10k at batch 64
TEST_MIN_STEPS = 20
# The rule: one-cycle peak = the test's suggestion (the smaller of steepest descent and the
# loss minimum's rate / 10, as `cnnlab lr-find` suggests; fastai feeds its suggestion to
# fit_one_cycle as the peak the same way), kept within [2, 4] x the optimizer's usual rate
# so one noisy short curve cannot pick a hopeless rate. 3x the suggestion hit the old 10x
# ceiling on digits and glyphs and lost to the hand-tuned 3x-usual rate. Where the short test
# suggests less than the usual rate (small noisy RGB, a frozen head on 245 photos, mnist10k),
# a peak at the usual rate trained slower than plain's constant usual rate (a one-cycle
# schedule averages about half its peak), so twice the usual rate is the floor: small RGB at
# 6 epochs 0.718 -> 0.815 test accuracy without augmentation, 0.848 with this floor
# (bench/results-recipe.md).
PEAK_MULT = 1.0
PEAK_LO, PEAK_HI = 2.0, 4.0
# A run under 100 steps gets no test: 20 steps would be more than a fifth of it (a fine-tuned
# EfficientNet on 245 photos takes 3.7 s a step on 2 cores: the test alone was 5 epochs).
# It gets the ceiling, 4x the usual rate: what the test chose on digits and glyphs, and on
# the frozen head of the photos as accurate as the floor the test chose there (0.902-0.895
# against 0.909-0.895 of 153 at 5-20 epochs; bench/results-recipe.md).
TEST_MIN_RUN = 5 * TEST_MIN_STEPS
# ... except a pretrained network fine-tuned, which gets 3x: on 245 photos, EfficientNet-Lite0
# at 4x lost to plain at 5 and 10 epochs (0.778, 0.817 against 0.784, 0.830 of 153), at 3x
# it won (0.791, 0.863).
PEAK_SHORT, PEAK_SHORT_TUNED = PEAK_HI, 3.0


@dataclass
class Plan:
    """What the recipe decided (or will decide: the lr, once the Trainer exists)."""

    auto: tuple[str, ...]
    values: dict[str, Any] = field(default_factory=dict)
    why: dict[str, str] = field(default_factory=dict)
    recorded: bool = False  # a resumed run: the values are the ones recorded at its start
    lr_pending: bool = False
    lr_test: dict = field(default_factory=dict)

    def record(self) -> dict:
        """config.yaml `resolved: recipe:` (and what a resume reads back)."""
        out: dict[str, Any] = dict(self.values)
        out["why"] = dict(self.why)
        if self.lr_test:
            out["lr_test"] = dict(self.lr_test)
        return out

    def lines(self) -> list[str]:
        """One printed line per choice."""
        if self.recorded:
            shown = ", ".join(f"{k} {_text(self.values.get(k))}" for k in self.auto)
            return [f"recipe: {shown} (as recorded when the run started)"]
        return [f"recipe: {k} {_text(self.values.get(k))} ({self.why.get(k, '')})"
                for k in self.auto]


def _text(v: object) -> str:
    if v is None:
        return "none"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def auto_settings(cfg: TrainConfig) -> tuple[str, ...]:
    """The settings the run's recipe decides (those the user did not give)."""
    return tuple((cfg.extra or {}).get("recipe_auto") or ())


def steps_per_epoch(cfg: TrainConfig, n_train: int) -> int:
    """Optimization steps of one epoch."""
    return max(1, math.ceil(n_train / (cfg.batch_size * cfg.accumulate)))


def total_steps(cfg: TrainConfig, n_train: int) -> int:
    """Optimization steps of the whole run."""
    return cfg.steps or cfg.epochs * steps_per_epoch(cfg, n_train)


def fine_tuned(cfg: TrainConfig) -> bool:
    """Trained weights (pretrained or --init-from) trained further, not a frozen backbone."""
    return bool(cfg.pretrained or cfg.init_from) and cfg.freeze != "all"


def data_choices(cfg: TrainConfig, splits: DataSplits) -> tuple[dict, dict]:
    """({setting: value}, {setting: why}) of augmentation and regularisation for this data.

    augment: a frozen backbone gets none (its features are then computed once, the feature
    cache); nor do runs below 10 epochs (even mild shifts slowed every small set's first
    epochs; a pretrained network fine-tuned: below 5, as it overfits a small set within 2) or
    images under 16 px (8x8 digits: a 1-pixel shift is an eighth of the image). From 10
    epochs (5 when fine-tuning): shifts of up to 1/16 of the side (crop=2 on 32 px,
    airbench's), plus rotations of 10 degrees on grey images (letters and symbols are never
    flipped) or a flip on colour ones; photos (96 px and up) a flip and a random resized
    crop instead; from 40 epochs TrivialAugment on colour images too. Shifts of 1/8 of the
    side (the rule before) lost to no augmentation on small RGB and digits at 10 and 20
    epochs (bench/results-recipe.md). mixup 0.2 from 30 epochs with 5,000+ training images (it pays
    off only over long runs), else off. label smoothing 0.1, off when mixup already softens
    the targets and on a frozen backbone (a head on fixed features: smoothing cost 1-7 of 153
    validation photos at 3-20 epochs). ema: none below 100 steps (the average would trail the
    model), 0.99, 0.999 from 20,000 steps.
    """
    train = splits.train
    n, c = len(train), train.channels
    side = min(train.image_size)
    epochs = cfg.epochs if not cfg.steps else max(1, round(cfg.steps /
                                                            steps_per_epoch(cfg, n)))
    steps = total_steps(cfg, n)
    frozen = cfg.freeze == "all"
    v: dict[str, Any] = {}
    why: dict[str, str] = {}
    kind = "grey" if c == 1 else "colour"
    why["augment"] = f"{kind} {side}px images, {epochs} epochs"
    shift = side // 16
    # a pretrained network fine-tuned fits a few hundred photos within 2 epochs: it needs the
    # augmentation from 5 epochs, where a network learning from scratch is still slowed by it
    tuned = fine_tuned(cfg)
    if tuned:
        why["augment"] += ", a pretrained network fine-tuned"
    if frozen:
        v["augment"], why["augment"] = None, "frozen backbone: its features are computed once"
    elif epochs < (5 if tuned else 10) or side < 16:
        v["augment"] = None
    elif c == 1:
        v["augment"] = f"crop={shift},rotate=10"
    else:
        base = "hflip,rrc=0.35" if side >= 96 else f"hflip,crop={shift}"
        v["augment"] = base + (",trivialaugment" if epochs >= 40 else "")
    if not frozen and epochs >= 30 and n >= 5000:
        v["mixup"], why["mixup"] = 0.2, f"{epochs} epochs of {n} images"
    else:
        v["mixup"], why["mixup"] = 0.0, f"{epochs} epochs of {n} images"
    if v["mixup"]:
        v["label_smoothing"], why["label_smoothing"] = 0.0, "mixup softens the targets"
    elif frozen:
        v["label_smoothing"] = 0.0
        why["label_smoothing"] = "frozen backbone: a head on fixed features"
    else:
        v["label_smoothing"], why["label_smoothing"] = 0.1, "the recipe's usual"
    if steps < 100:
        v["ema"], why["ema"] = None, f"{steps} steps"
    else:
        v["ema"], why["ema"] = (0.999 if steps >= 20000 else 0.99), f"{steps} steps"
    return v, why


def prepare(cfg: TrainConfig, splits: DataSplits, recorded: dict | None = None
            ) -> tuple[TrainConfig, Plan | None]:
    """The config to train with (a copy with the recipe's data choices applied; `cfg` itself,
    the settings as asked, is unchanged) and the plan; (cfg, None) when nothing is automatic.
    `recorded` (a resumed run's `resolved: recipe:`) is applied as it is."""
    auto = auto_settings(cfg)
    if not auto:
        return cfg, None
    run_cfg = deepcopy(cfg)
    plan = Plan(auto)
    if recorded:
        plan.recorded = True
        plan.values = {k: recorded.get(k) for k in auto if k in recorded}
        plan.why = dict(recorded.get("why") or {})
        plan.lr_test = dict(recorded.get("lr_test") or {})
    else:
        values, why = data_choices(cfg, splits)
        plan.values = {k: values[k] for k in auto if k in values}
        plan.why = {k: why[k] for k in plan.values}
    for k, value in plan.values.items():
        setattr(run_cfg, k, value)
    plan.lr_pending = "lr" in auto and run_cfg.lr is None
    return run_cfg, plan


def choose_lr(trainer: Trainer) -> tuple[float, str, dict | None]:
    """(the one-cycle peak, the rule that chose it, the range test's record): the range test
    on this Trainer, then the rule; a run too short to test gets the rule alone (record None).

    The model's weights, the optimizer's state, the gradient scaler and the random state are
    restored afterwards, so the run starts as it would have without the test."""
    cfg = trainer.cfg
    usual = OPTIMIZER_LRS[cfg.optimizer]
    if trainer.total_steps < TEST_MIN_RUN:
        tuned = fine_tuned(cfg)
        mult = PEAK_SHORT_TUNED if tuned else PEAK_SHORT
        peak = float(f"{usual * mult:.3g}")
        _set_peak(trainer, peak)
        return peak, (f"a {trainer.total_steps}-step run is too short for a range test (under "
                      f"{TEST_MIN_RUN} steps): {mult:g} x the usual {usual:g}"
                      + (" (pretrained weights fine-tuned)" if tuned else "")), None
    per_epoch = max(1, trainer.steps_per_epoch)
    steps = min(TEST_MAX_STEPS, max(TEST_MIN_STEPS, trainer.total_steps // 5))
    t0 = time.perf_counter()
    weights = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    opt_state = deepcopy(trainer.optimizer.state_dict())
    scaler_state = deepcopy(trainer.scaler.state_dict()) if trainer.scaler is not None else None
    rng = torch.get_rng_state()
    mults = _lr_mults(trainer)
    try:
        lrs, raw = range_test(trainer, usual * TEST_FROM, usual * TEST_TO, steps)
    finally:
        trainer.model.load_state_dict(weights)
        trainer.optimizer.load_state_dict(opt_state)
        if scaler_state is not None:
            trainer.scaler.load_state_dict(scaler_state)
        torch.set_rng_state(rng)
        trainer.state.running = {"loss": 0.0, "correct": 0, "n": 0}
    smooth = centered_mean(raw, max(3, (steps // 10) | 1))
    steepest, min_div10 = suggest(lrs, smooth)
    suggested = min((v for v in (steepest, min_div10) if v is not None), default=None)
    if suggested is None:
        peak, rule = usual * PEAK_MULT, f"no curve to read: {PEAK_MULT:g} x the usual {usual:g}"
    else:
        peak = min(max(PEAK_MULT * suggested, usual * PEAK_LO), usual * PEAK_HI)
        rule = f"{PEAK_MULT:g} x the suggested {suggested:.3g}"
        if peak != PEAK_MULT * suggested:
            rule += f", kept within [{usual * PEAK_LO:.3g}, {usual * PEAK_HI:.3g}]"
    peak = float(f"{peak:.3g}")
    seconds = time.perf_counter() - t0
    _set_peak(trainer, peak, mults)
    trainer.state.elapsed += seconds  # the test is part of the time to any accuracy
    record = {"steps": len(lrs), "of_steps": steps, "epochs_of_data": round(len(lrs) / per_epoch,
                                                                            2),
              "seconds": round(seconds, 3), "from": usual * TEST_FROM, "to": lrs[-1] if lrs
              else None, "suggested": suggested, "steepest": steepest, "min_div10": min_div10,
              "rule": rule}
    return peak, f"{rule}, from a {len(lrs)}-step range test ({seconds:.1f} s)", record


def _lr_mults(trainer: Trainer) -> list[float]:
    """Each parameter group's rate over the run's (a pretrained backbone's 0.1, ...)."""
    base = trainer.cfg.resolved_lr()
    return [g["initial_lr"] / base for g in trainer.optimizer.param_groups]


def _set_peak(trainer: Trainer, peak: float, mults: list[float] | None = None) -> None:
    """Train with `peak` as the run's rate: every parameter group keeps its multiplier."""
    mults = mults or _lr_mults(trainer)
    for g, mult in zip(trainer.optimizer.param_groups, mults, strict=True):
        g["lr"] = g["initial_lr"] = peak * mult
    trainer.cfg.lr = peak
    trainer.resolved["lr"] = peak


def finish(trainer: Trainer, plan: Plan | None) -> None:
    """After the Trainer exists: choose the lr if it is still to choose; record the plan in
    trainer.resolved (config.yaml, metrics.json, the checkpoint, the report)."""
    if plan is None:
        return
    if plan.lr_pending:
        peak, rule, test = choose_lr(trainer)
        plan.values["lr"], plan.why["lr"] = peak, f"one-cycle peak, {rule}"
        if test is not None:
            plan.lr_test = test
        plan.lr_pending = False
    elif "lr" in plan.values and plan.values["lr"] is not None:
        trainer.resolved["lr"] = plan.values["lr"]
    trainer.resolved["recipe"] = plan.record()
