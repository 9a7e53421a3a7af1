"""Every setting of a training run, defined once: name, type, default, allowed values, help, group.

The CLI options of `train` and of every experiment command, the keywords of `cnnlab.train`, the
parameters of `ImageClassifier` and config.yaml are all derived from SETTINGS, and `resolve`
validates any mix of them before anything is written. Adding a setting is one `Setting(...)`
line here plus the code that uses it.
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Only the names of the registries, not their code: importing the settings (as the CLI does for
# every --help and option error) must not import torch.
from cnnlab.choices import (
    FORMATS,
    LOGGERS,
    OPTIMIZER_LRS,
    PRECISIONS,
    RESIZE_MODES,
    SAMPLERS,
    SCHEDULES,
)
from cnnlab.data.options import CsvColumns, LoadOptions
from cnnlab.errors import CnnlabError, name_list

GROUPS = ("data", "model", "optimization", "augmentation", "hardware", "output", "tracking")


class SettingsError(CnnlabError, ValueError):
    """An invalid setting: one line naming it (exit 2 in the CLI, a ValueError in Python)."""


@dataclass(frozen=True)
class Setting:
    """One setting and everything the entry points derive from it."""

    name: str
    default: Any
    group: str
    help: str
    kind: type = str  # int, float, str, bool, list or dict
    choices: tuple | None = None
    lo: float | None = None  # smallest allowed value
    hi: float | None = None  # largest allowed value
    above: bool = False  # lo itself is not allowed (value must be > lo)
    nullable: bool = False  # None is a valid value (e.g. "the optimizer's default")
    metavar: str | None = None
    parse: Callable[[str], Any] | None = None  # CLI text -> value, for list/dict settings
    resumable: bool = False  # may change on --resume (recorded in the run's history)
    affects_result: bool = True  # False: where or how fast a run goes, not what it learns
    cli: bool = True  # offered as a command-line option
    short: str | None = None
    aliases: tuple[str, ...] = ()  # older spellings of the CLI option, still accepted
    # Names added at run time (a registry's register_*), allowed beside `choices`.
    registered: Callable[[], tuple] | None = None

    @property
    def sweepable(self) -> bool:
        """Whether a sweep or search may vary it: numbers, true/false, a choice or the model."""
        return self.kind in (int, float, bool) or self.choices is not None or self.name == "model"

    @property
    def flag(self) -> str:
        """The long CLI option, e.g. --batch-size."""
        return "--" + self.name.replace("_", "-")

    def check(self, value: Any) -> Any:
        """The value converted to the setting's type, or a SettingsError naming the setting."""
        if value is None:
            if self.nullable or self.default is None:
                return None
            raise SettingsError(f"{self.flag}: a value is required")
        if isinstance(value, str) and self.parse is not None:
            value = self.parse(value)
        value = _convert(self, value)
        allowed = self.choices
        if allowed is not None and self.registered is not None and value not in allowed:
            allowed = (*allowed, *(c for c in self.registered() if c not in allowed))
        if allowed is not None and value not in allowed:
            near = difflib.get_close_matches(str(value), [str(c) for c in allowed], 1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"{self.flag} {value!r}: choose {', '.join(map(str, allowed))}"
                                f"{hint}")
        if self.kind in (int, float):
            if not math.isfinite(value):
                raise SettingsError(f"{self.flag} {value}: must be a finite number")
            if self.lo is not None and (value < self.lo or (self.above and value == self.lo)):
                op = ">" if self.above else ">="
                raise SettingsError(f"{self.flag} {value}: must be {op} {self.lo:g}")
            if self.hi is not None and value > self.hi:
                raise SettingsError(f"{self.flag} {value}: must be <= {self.hi:g}")
        return value


def _convert(s: Setting, value: Any) -> Any:
    kind = s.kind
    try:
        if kind is bool:
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            if not isinstance(value, (bool, int)) or value not in (0, 1):
                raise TypeError
            return bool(value)
        if kind is int:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value.strip().lower() if s.choices else value
        if kind is dict:
            if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
                return parse_model_args(value)
            if not isinstance(value, Mapping):
                raise TypeError
            return dict(value)
        if kind is list:
            if isinstance(value, (str, int, float)):
                return value  # e.g. class_weights="auto"; checked by its own parser
            if s.parse is not None and value and all(isinstance(v, str) for v in value):
                return s.parse(",".join(value))  # e.g. track=["mlflow", "tensorboard"]
            return [float(v) for v in value]
    except (TypeError, ValueError, OverflowError):
        pass
    raise SettingsError(f"{s.flag} {value!r}: expected {_kind_name(kind)}")


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "true or false", str: "text",
            dict: "KEY=VALUE pairs", list: "a list of numbers"}[kind]


def key_value(item: str, flag: str, expected: str = "KEY=VALUE",
              value_required: bool = False) -> tuple[str, str]:
    """'KEY=VALUE' -> (key, value text), both stripped: the one KEY=VALUE grammar of every
    option that takes pairs (--model-arg, --grid, --param, compat's --set)."""
    key, sep, val = item.partition("=")
    key, val = key.strip(), val.strip()
    if not sep or not key or (value_required and not val):
        raise SettingsError(f"{flag} {item!r}: expected {expected}")
    return key, val


def parse_model_args(text: str | Iterable[str]) -> dict:
    """'width=8,depth=2' or ['width=8', 'depth=2'] -> {'width': 8, 'depth': 2}."""
    items = text.split(",") if isinstance(text, str) else list(text)
    pairs = (key_value(item, "--model-arg") for item in items if item.strip())
    return {key: parse_value(val) for key, val in pairs}


def parse_value(text: str) -> object:
    """'3' -> 3, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else stays text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def check_positive_class(pos: str | None, classes: list[str], whose: str = "data") -> None:
    """--positive-class names one of two classes (train checks the data's, evaluate the
    model's)."""
    if pos is None:
        return
    if pos not in classes:
        raise SettingsError(f"--positive-class {pos!r}: not a class of the {whose} "
                            f"({name_list(classes)})")
    if len(classes) != 2:
        raise SettingsError(f"--positive-class {pos!r}: applies to 2-class data; this {whose} "
                            f"has {len(classes)} classes (per-class precision, recall and F1 "
                            "are reported for every class)")


def parse_class_weights(text: str, classes: list[str] | None = None
                        ) -> list[float] | str | None:
    """'auto', 'none', '1,20' or 'dogs=20' (by class name, others weigh 1). Without `classes`:
    the value as the run keeps it (names checked for form, resolved when training starts);
    with them, names become one weight per class."""
    t = text.strip()
    if t.lower() in ("auto", "none"):
        return t.lower()
    if "=" not in t:
        try:
            return [float(v) for v in t.split(",") if v.strip()]
        except ValueError:
            raise SettingsError(f"--class-weights {text!r}: give auto, numbers like 1,20 or "
                                "CLASS=WEIGHT pairs") from None
    pairs = []
    for item in (p.strip() for p in t.split(",")):
        name, sep, value = item.rpartition("=")
        if not sep or not name.strip():
            raise SettingsError(f"--class-weights {text!r}: write NAME=WEIGHT pairs like "
                                "dogs=20, or one number per class")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise SettingsError(f"--class-weights: weight of {name.strip()!r} must be a number, "
                                f"got {value.strip()!r}") from None
    if classes is None:
        return t
    weights = dict.fromkeys(classes, 1.0)
    for name, w in pairs:
        if name not in weights:
            raise SettingsError(f"--class-weights: no class {name!r} (classes: "
                                f"{name_list(classes)})")
        weights[name] = w
    return [weights[c] for c in classes]


def _normalize(text: str) -> str:
    """A --normalize spec: auto, train, imagenet, none, MEAN,STD or a mean and std per channel."""
    t = str(text).strip().lower()
    if t in ("auto", "train", "imagenet", "none"):
        return t
    try:
        n = len([float(v) for v in t.replace("[", " ").replace("]", " ").replace("(", " ")
                 .replace(")", " ").replace(";", ",").replace(" ", ",").split(",") if v])
    except ValueError:
        n = 0
    if n not in (2, 6):
        raise SettingsError(f"--normalize {text!r}: give auto, train, imagenet, none, MEAN,STD or "
                            "three means and three stds")
    return str(text).strip()


def _as_setting(parse: Callable[[str], Any], text: str) -> Any:
    """parse(text) by another layer's own parser, its error as a SettingsError."""
    try:
        return parse(text)
    except CnnlabError as exc:
        raise SettingsError(str(exc)) from None


def _value_range(text: str) -> list[float]:
    """'0,255' or '-1..1' -> [lo, hi] with lo < hi (the data layer's own parser)."""
    from cnnlab.data.value_range import parse_range

    return list(_as_setting(lambda t: parse_range(t, "--value-range"), text))


def _track(text: str) -> list[str]:
    """'tensorboard,mlflow' -> ['tensorboard', 'mlflow'] (each tracker once; 'none': off)."""
    names: list[str] = []
    for part in str(text).replace(" ", ",").split(","):
        name = part.strip().lower()
        if not name or name == "none" or name in names:
            continue
        if name not in LOGGERS:
            near = difflib.get_close_matches(name, list(LOGGERS), 1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"--track {part.strip()!r}: choose {', '.join(LOGGERS)}{hint}")
        names.append(name)
    return names


def _augment(text: str) -> str:
    """An --augment spec, checked before anything is loaded or written (data/augment.py)."""
    from cnnlab.data.augment import parse_spec

    _as_setting(parse_spec, text)
    return text


def _tta(text: str) -> str:
    """A --tta spec: none, or views flip, vflip, shift[=P] (models/tta.py)."""
    from cnnlab.models.tta import parse_tta

    return _as_setting(parse_tta, text)


def _freeze(text: str) -> str:
    t = str(text).strip().lower()
    if t in ("none", "all") or t.isdigit():
        return "none" if t in ("none", "0") else t
    raise SettingsError(f"--freeze {text!r}: give none, all or a number of layers")


def _milestones(text: str) -> list[float]:
    """'5,8' -> [5.0, 8.0] (epochs, increasing)."""
    try:
        marks = [float(v) for v in str(text).replace(";", ",").split(",") if v.strip()]
    except ValueError:
        marks = []
    if not marks or any(not math.isfinite(m) or m <= 0 for m in marks) or marks != sorted(marks):
        raise SettingsError(f"--lr-milestones {text!r}: give increasing epochs like 5,8")
    return marks


# A recipe gives defaults to the settings the user did not set (recipe_defaults below).
# plain: the settings' own defaults, i.e. the loop as it was before recipes existed.
# fast: measured on bench/ (see bench/results.md "time to the textbook's accuracy").
RECIPES: dict[str, dict[str, Any]] = {
    "plain": {},
    # one-cycle anneals to ~0, so its last epoch is the model it aims at; with label smoothing
    # the validation loss rises while accuracy still improves, so it would pick too early.
    "fast": {"schedule": "onecycle", "label_smoothing": 0.1, "ema": 0.99, "monitor": "last"},
}
# Settings a recipe decides from the run's own data when the user does not give them
# (train/autorecipe.py: a range test for the lr; rules from data kind, size and epochs for the
# rest). The names left to it travel in cfg.extra["recipe_auto"].
RECIPE_AUTO: dict[str, tuple[str, ...]] = {
    "plain": (),
    "fast": ("lr", "augment", "label_smoothing", "ema", "mixup"),
}
DEFAULT_RECIPE = "plain"


def setting(default: Any, group: str, text: str, kind: type = str, **options: Any) -> Any:
    """A TrainConfig field whose metadata holds its Setting (named after the field)."""
    meta = {"setting": (default, group, text, kind, options)}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _usual_lrs() -> str:
    """'0.01 sgd, 0.003 adam/adamw, 0.001 rmsprop': choices.OPTIMIZER_LRS for --lr's help."""
    by_rate: dict[float, list[str]] = {}
    for name, rate in OPTIMIZER_LRS.items():
        by_rate.setdefault(rate, []).append(name)
    return ", ".join(f"{rate:g} {'/'.join(names)}" for rate, names in by_rate.items())


def registered_formats() -> tuple[str, ...]:
    """--format names a source registered at run time adds (register_source): read from the
    registry only once something imported it, so the CLI's options stay free of torch."""
    registry = sys.modules.get("cnnlab.data.sources.registry")
    return tuple(registry.format_names()) if registry is not None else ()


# The data settings' defaults are LoadOptions' own: declared once, where the data layer (which
# cannot import the settings) needs them for direct callers.
_LOAD, _COLUMNS = LoadOptions(), CsvColumns()


@dataclass
class TrainConfig:
    """Settings of one training run: one typed field per setting, its Setting in the metadata."""

    data: str | None = None  # the source path: an argument, not an option
    # ---- data: how images are read and split (also used by evaluate, predict, explain, ...)
    format: str = setting(_LOAD.format, "data", "Source format.", choices=FORMATS,
                          registered=registered_formats)
    image_size: int | None = setting(
        _LOAD.image_size, "data", "Resize images to N x N [default: the data's own size for "
        "arrays, the model's for files].", int, lo=1, metavar="PIXELS")
    channels: int | None = setting(
        _LOAD.channels, "data", "1 (grey) or 3 (RGB) [default: the data's].", int,
        choices=(1, 3), metavar="N")
    resize: str = setting(
        _LOAD.resize, "data", "crop: keep the aspect ratio and centre-crop; stretch: distort; "
        "shorter: shorter side to --image-size (torchvision's Resize).", choices=RESIZE_MODES)
    val_split: float = setting(
        _LOAD.val_split, "data", "Validation fraction when the source has no val split.", float,
        lo=0.0, hi=0.9, metavar="FRACTION")
    test_split: float = setting(
        _LOAD.test_split, "data", "Test fraction when the source has no partitions.", float,
        lo=0.0, hi=0.9, metavar="FRACTION")
    task: str | None = setting(
        _LOAD.task, "data", "CSV: use the rows of this task.", metavar="NAME")
    image_dir: str | None = setting(
        _LOAD.image_dir, "data", "CSV: folder the image paths are relative to [default: the "
        "CSV's folder].", metavar="DIR")
    path_column: str = setting(
        _COLUMNS.path, "data", "CSV column with the image paths.", metavar="NAME")
    label_column: str = setting(
        _COLUMNS.label, "data", "CSV column with class names.", metavar="NAME")
    numeric_column: str = setting(
        _COLUMNS.numeric, "data", "CSV column with class numbers.",
        metavar="NAME", aliases=("--numeric-label-column",))
    partition_column: str = setting(
        _COLUMNS.partition, "data", "CSV column with train/val/test.",
        metavar="NAME")
    task_column: str = setting(
        _COLUMNS.task, "data", "CSV column naming each row's task.", metavar="NAME")
    skip_bad: bool = setting(
        _LOAD.skip_bad, "data", "Skip unreadable images instead of stopping.", bool)
    layout: str = setting(
        _LOAD.layout, "data", "Folders: classes (ROOT/CLASS/...), splits (ROOT/SPLIT/"
        "CLASS/...) or auto (split names like train/, test_set/ are recognised).",
        choices=("auto", "classes", "splits"))
    crop_size: int | None = setting(
        _LOAD.crop_size, "data", "Centre-crop to N x N after resizing (with --resize shorter: "
        "torchvision's Resize(image_size) then CenterCrop(N)).", int, lo=1,
        nullable=True, metavar="PIXELS")
    value_range: list[float] | None = setting(
        _LOAD.value_range, "data", "Arrays: the values that mean black and white, e.g. 0,1 or "
        "-1,1 [default: by dtype: uint8 0..255, floats 0..1].", list, parse=_value_range,
        nullable=True, metavar="LO,HI")
    # ---- model
    model: str = setting(
        "cnn", "model", "Architecture (see `cnnlab models`), or package.module:function "
        "for your own builder.", metavar="NAME", short="-m")
    model_args: dict[str, Any] = setting(
        {}, "model", "Model argument KEY=VALUE (repeatable), e.g. width=8.", dict,
        parse=parse_model_args, metavar="KEY=VALUE", aliases=("--model-arg",))
    normalize: str = setting(
        "auto", "model", "Input normalization: train (the training split's mean/std),"
        " imagenet, none, MEAN,STD or m1,m2,m3,s1,s2,s3 [default: auto = imagenet with "
        "--pretrained, else train].", parse=_normalize, metavar="SPEC")
    pretrained: bool = setting(False, "model", "Start from the model's ImageNet weights.", bool)
    weights_file: str | None = setting(
        None, "model", "Local file with the pretrained weights.", metavar="FILE")
    freeze: str = setting(
        "none", "model", "Freeze none, all (train the head only) or the first N layer "
        "groups.", parse=_freeze, metavar="none|all|N")
    backbone_lr_mult: float = setting(
        0.1, "model", "Learning-rate factor of pretrained/transferred layers.",
        float, lo=0.0, metavar="FACTOR")
    init_from: str | None = setting(
        None, "model", "Start from the layers of one of our checkpoints (transfer).",
        metavar="CKPT")
    # ---- optimization
    epochs: int = setting(
        10, "optimization", "Epochs to train.", int, lo=1, metavar="N", resumable=True,
        short="-e")
    steps: int | None = setting(
        None, "optimization", "Train for N optimization steps instead of --epochs (the "
        "last epoch may be partial).", int, lo=1, nullable=True, metavar="N", resumable=True)
    batch_size: int = setting(
        64, "optimization", "Images per optimization step.", int, lo=1, hi=1 << 20,
        metavar="N", short="-b")
    lr: float | None = setting(
        None, "optimization", f"Learning rate [default: {_usual_lrs()}].", float, lo=0.0,
        above=True, nullable=True, metavar="RATE")
    optimizer: str = setting("adamw", "optimization", "Optimizer.", choices=tuple(OPTIMIZER_LRS))
    momentum: float = setting(
        0.9, "optimization", "SGD momentum.", float, lo=0.0, hi=1.0, metavar="M")
    weight_decay: float = setting(
        0.0, "optimization", "Weight decay (not on biases and norms).", float,
        lo=0.0, metavar="W")
    schedule: str = setting(
        "cosine", "optimization", "Learning-rate schedule, stepped every batch.",
        choices=tuple(SCHEDULES))
    patience: int | None = setting(
        None, "optimization", "Stop after N epochs without a better --monitor value.",
        int, lo=1, nullable=True, metavar="N", resumable=True)
    monitor: str = setting(
        "val_loss", "optimization", "What makes an epoch the best (best.pt, the final "
        "scores, --patience): val_loss (lowest; without a validation split the training loss), "
        "val_acc (highest; ties go to the lower loss) or last (the latest epoch: for schedules "
        "that anneal to zero, such as --recipe fast's).", choices=("val_loss", "val_acc", "last"))
    class_weights: list[float] | str | None = setting(
        None, "optimization", "Loss weights: auto (inverse frequency), 1,20 or "
        "CLASS=WEIGHT.", list, parse=parse_class_weights, nullable=True, metavar="WEIGHTS")
    sampler: str = setting(
        "none", "optimization", "balanced: oversample rare classes.",
        choices=tuple(SAMPLERS))
    clip_grad: float | None = setting(
        None, "optimization", "Clip the gradient norm to this value.", float, lo=0.0,
        above=True, nullable=True, metavar="NORM")
    recipe: str | None = setting(
        None, "optimization", "Defaults for the settings you do not give: plain "
        "(the loop as it was: cosine, no smoothing, no averaging) or fast (one-cycle at a rate "
        "from a short range test on your data, or 3-4x the usual rate on runs under 100 steps; "
        "augmentation, label smoothing, weight averaging "
        f"and mixup chosen by data and epochs; see docs/recipe.md) [default: {DEFAULT_RECIPE}].",
        choices=tuple(RECIPES), nullable=True, metavar="NAME")
    warmup: float = setting(
        0.0, "optimization", "Linear learning-rate warmup before the schedule: N steps, "
        "or a fraction of all steps when < 1.", float, lo=0.0, metavar="STEPS")
    cycle_momentum: bool = setting(
        True, "optimization", "--schedule onecycle: cycle the momentum (SGD) or "
        "beta1 (Adam) from 0.95 down to 0.85 and back, against the rate.", bool)
    lr_step: int | None = setting(
        None, "optimization", "--schedule step: epochs between drops by --lr-gamma "
        "[default: a third of the epochs].", int, lo=1, nullable=True, metavar="EPOCHS")
    lr_milestones: list[float] | None = setting(
        None, "optimization", "--schedule multistep: epochs at which the rate "
        "drops by --lr-gamma, e.g. 5,8 [default: at 1/2 and 3/4 of the epochs].", list,
        parse=_milestones, nullable=True, metavar="EPOCHS")
    lr_gamma: float = setting(
        0.1, "optimization", "Factor of each drop of --schedule step, multistep and "
        "plateau.", float, lo=0.0, hi=1.0, above=True, metavar="FACTOR")
    lr_patience: int = setting(
        2, "optimization", "--schedule plateau: epochs without a lower validation "
        "loss before the rate drops.", int, lo=1, metavar="N", resumable=True)
    label_smoothing: float = setting(
        0.0, "optimization", "Label smoothing of the training loss (0.1 is "
        "usual).", float, lo=0.0, hi=1.0, metavar="X")
    ema: float | None = setting(
        None, "optimization", "Average the weights over steps with this decay (e.g. 0.999)"
        "; validation, best.pt and the report use the average.", float, lo=0.0, hi=1.0,
        above=True, nullable=True, metavar="DECAY")
    accumulate: int = setting(
        1, "optimization", "Add up the gradients of N batches per optimization "
        "step (= an N-times larger batch).", int, lo=1, hi=1 << 16, metavar="N")
    seed: int = setting(
        0, "optimization", "Seed of the data split, initialisation and batch order.", int,
        metavar="N")
    split_seed: int | None = setting(
        None, "data", "Seed of the train/val/test split alone [default: --seed].",
        int, nullable=True, metavar="N")
    positive_class: str | None = setting(
        None, "optimization", "Binary tasks: the class precision, recall and F1 "
        "are about.", metavar="CLASS")
    # ---- augmentation
    augment: str | None = setting(
        None, "augmentation", 'Online augmentation of each batch, e.g. '
        '"hflip,rotate=20,crop=4".', nullable=True, metavar="OPS", parse=_augment)
    tta: str = setting(
        "none", "augmentation", "Test-time augmentation of the final scores (and the "
        "default of evaluate, predict and predict_proba): none, or views to average, e.g. flip, "
        "flip,shift (6 views), vflip, shift=2.", parse=_tta, metavar="VIEWS", resumable=True)
    calibrate: bool = setting(
        False, "optimization", "After training, fit a temperature on the validation "
        "split (saved in best.pt; metrics.json gets ECE and NLL before and after).", bool,
        resumable=True)
    mixup: float = setting(
        0.0, "augmentation", "MixUp of whole batches: Beta(ALPHA, ALPHA) mixing "
        "weight (0: off; 0.2-0.4 usual).", float, lo=0.0, metavar="ALPHA")
    cutmix: float = setting(
        0.0, "augmentation", "CutMix of whole batches: Beta(ALPHA, ALPHA) area (0: off; "
        "1.0 usual); with --mixup too each batch picks one of them.", float, lo=0.0,
        metavar="ALPHA")
    mix_prob: float = setting(
        1.0, "augmentation", "Fraction of batches --mixup/--cutmix mix.", float,
        lo=0.0, hi=1.0, metavar="P")
    mix_off_epochs: int = setting(
        0, "augmentation", "Stop mixing for the last N epochs.", int, lo=0,
        metavar="N")
    # ---- hardware: where and how fast, never what is learned
    device: str = setting(
        "auto", "hardware", "Where to train.", choices=("auto", "cpu", "cuda", "mps"),
        resumable=True, affects_result=False)
    precision: str = setting(
        "auto", "hardware", "auto: bf16 where the CPU/GPU has it natively.",
        choices=PRECISIONS, affects_result=False)
    channels_last: bool | None = setting(
        None, "hardware", "Memory layout [default: decided per device and "
        "model].", bool, nullable=True, affects_result=False)
    num_threads: int | None = setting(
        None, "hardware", "CPU threads [default: every core].", int, lo=1,
        nullable=True, metavar="N", resumable=True, affects_result=False)
    deterministic: bool = setting(False, "hardware", "Bit-reproducible (slower) algorithms.", bool)
    feature_cache: bool = setting(
        True, "hardware", "Frozen backbone: compute its features once.", bool,
        affects_result=False)
    # ---- output
    out: str | None = setting(
        None, "output", "Run folder [default: runs/NAME].", metavar="DIR", short="-o",
        affects_result=False)
    runs_dir: str = setting(
        "runs", "output", "Parent folder of runs without --out.", metavar="DIR",
        affects_result=False)
    name: str | None = setting(
        None, "output", "Run name under runs/ [default: DATA-MODEL].", metavar="NAME",
        affects_result=False)
    report: bool = setting(True, "output", "Write report.html.", bool, affects_result=False)
    doctor: bool = setting(
        False, "output", "Check the data first (leaks, duplicates, label errors, "
        "outliers, shift: `cnnlab doctor`) and write doctor.html into the run folder.", bool,
        affects_result=False)
    log_every: int = setting(
        0, "output", "Also log train loss every N steps to steps.csv (0: off).", int,
        lo=0, metavar="N", affects_result=False, resumable=True)
    eval_every: int = setting(
        0, "output", "Also evaluate the validation split every N steps: a printed "
        "line, val columns in steps.csv, plots/curves_steps.png (0: off).", int, lo=0,
        metavar="N", affects_result=False, resumable=True)
    keep_every: int = setting(
        0, "output", "Keep epoch_K.pt (resumable, full training state) every N "
        "epochs (0: off).", int, lo=0, metavar="N", affects_result=False, resumable=True)
    # ---- tracking: copies of what a run logs, sent to TensorBoard / MLflow (experiments too)
    track: list[str] = setting(
        [], "tracking", "Also log to tensorboard and/or mlflow (comma-separated; needs "
        "pip install -e '.[track]').", list, parse=_track, metavar="LOGGERS",
        affects_result=False, resumable=True)
    track_uri: str | None = setting(
        None, "tracking", "MLflow tracking URI, e.g. http://host:5000 [default: "
        "sqlite:///RUNS_DIR/mlflow.db].", metavar="URI", affects_result=False, resumable=True)
    # what other modules add (e.g. plots switched off by the estimator, the recipe's choices)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """A plain dict (for YAML and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> TrainConfig:
        """Rebuild from a saved dict, ignoring keys of older or newer versions."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def resolved_lr(self) -> float:
        """The learning rate to use: the given one or the optimizer's usual default."""
        return self.lr if self.lr is not None else OPTIMIZER_LRS[self.optimizer]


# Every entry point derives its options, keywords and checks from this one list.
SETTINGS: dict[str, Setting] = {
    f.name: Setting(f.name, *f.metadata["setting"][:4], **f.metadata["setting"][4])
    for f in fields(TrainConfig) if "setting" in f.metadata}
RESUMABLE = {n for n, s in SETTINGS.items() if s.resumable} | {"out", "runs_dir", "name",
                                                                "report"}
DATA_KEYS = tuple(n for n, s in SETTINGS.items() if s.group == "data")


def unknown_keys(keys: Iterable[str], allowed: Iterable[str] | None = None) -> None:
    """Refuse names that are not settings, suggesting the closest one."""
    allowed = list(allowed if allowed is not None else SETTINGS)
    for k in keys:
        if k not in allowed:
            near = difflib.get_close_matches(k, allowed, 1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise SettingsError(f"unknown setting {k!r}{hint}")


def check_values(values: Mapping[str, Any]) -> dict:
    """Each given value checked and converted by its own Setting."""
    unknown_keys([k for k in values if k not in ("data", "extra")])
    return {k: (v if k in ("data", "extra") else SETTINGS[k].check(v)) for k, v in values.items()}


def check_saved(doc: Mapping, source: object) -> dict:
    """Saved settings (config.yaml, a checkpoint's config) checked again on load by each
    setting's own rule: a bad value is one line naming the file, the key and the value.
    Keys of other versions and the records beside the settings (resolved, resumed) pass."""
    if not isinstance(doc, Mapping):
        raise SettingsError(f"{source}: its settings are not KEY: VALUE pairs")
    out = dict(doc)
    records = {"data": str, "extra": Mapping}  # beside the settings: None or this type
    for key, value in doc.items():
        if key in SETTINGS:
            try:
                out[key] = SETTINGS[key].check(value)
            except (CnnlabError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                raise SettingsError(f"{source}: {key}: {str(value)[:60]!r} is not valid "
                                    f"({str(exc) or type(exc).__name__})") from None
        elif key in records and not (value is None or isinstance(value, records[key])):
            raise SettingsError(f"{source}: {key}: {str(value)[:60]!r} is not valid")
    return out


def check_combination(cfg: Any) -> None:
    """Checks that involve several settings (each value is already valid on its own)."""
    if cfg.val_split + cfg.test_split >= 0.95:
        raise SettingsError(f"--val-split {cfg.val_split:g} plus --test-split {cfg.test_split:g} "
                            "leave too little training data")
    if cfg.freeze == "all" and not cfg.pretrained and not cfg.init_from:
        raise SettingsError("--freeze all without --pretrained or --init-from would train a head "
                            "on random features; add one of them")
    if cfg.weights_file and not cfg.pretrained:
        raise SettingsError("--weights-file needs --pretrained")
    from cnnlab.models import get_spec

    if ":" not in cfg.model:
        spec = _as_setting(get_spec, cfg.model)
        if cfg.pretrained and not spec.pretrained:
            raise SettingsError(f"--pretrained: model {cfg.model!r} has no pretrained weights "
                                "(see `cnnlab models`)")
    else:
        get_spec(cfg.model)  # a custom builder must be importable now, not after loading data


def resolve(values: Mapping[str, Any] | None = None, base: Any | None = None) -> Any:
    """A validated TrainConfig: `values` (only what was given) over `base` or the defaults."""
    checked = check_values(dict(values or {}))
    if base is None:
        checked = recipe_defaults(checked)
    cfg = TrainConfig.from_dict({**(base.to_dict() if base is not None else {}), **checked})
    check_combination(cfg)
    return cfg


def recipe_defaults(given: Mapping[str, Any]) -> dict:
    """`given` plus the recipe's values for the settings it does not name (checked)."""
    name = given.get("recipe") or DEFAULT_RECIPE
    extra = {k: SETTINGS[k].check(v) for k, v in RECIPES[name].items() if k not in given}
    out = {**given, "recipe": name, **extra}
    # an lr of None is "not chosen"; None for another setting (--ema, --augment) is a choice
    auto = [k for k in RECIPE_AUTO[name] if k not in given or (k == "lr" and given[k] is None)]
    if auto:
        out["extra"] = {**(given.get("extra") or {}), "recipe_auto": auto}
    return out


def without_recipe_defaults(values: Mapping[str, Any]) -> dict:
    """`values` without the settings the recipe sets that still hold their plain default: for
    callers that hand over every setting (the estimator), so the recipe can fill them."""
    name = values.get("recipe") or DEFAULT_RECIPE
    mine = {**RECIPES.get(name, {}), **dict.fromkeys(RECIPE_AUTO.get(name, ()))}
    return {k: v for k, v in values.items()
            if not (k in mine and k in SETTINGS and v == SETTINGS[k].default)}


def with_recipe(cfg: Any, name: str) -> Any:
    """cfg switched to recipe `name`: each setting still at its old recipe's value (or the plain
    default) takes the new recipe's; values the user chose stay. For grids over --recipe."""
    name = SETTINGS["recipe"].check(name) or DEFAULT_RECIPE
    old, new = RECIPES[cfg.recipe or DEFAULT_RECIPE], RECIPES[name]
    left = {k for k in {**old, **new} if getattr(cfg, k) == old.get(k, SETTINGS[k].default)}
    left |= set((cfg.extra or {}).get("recipe_auto") or ())
    for k in left & set({**old, **new}):
        setattr(cfg, k, SETTINGS[k].check(new.get(k, SETTINGS[k].default)))
    auto = [k for k in RECIPE_AUTO[name] if k in left or (k not in old and getattr(cfg, k)
                                                           == SETTINGS[k].default)]
    cfg.extra = {k: v for k, v in (cfg.extra or {}).items() if k != "recipe_auto"}
    if auto:
        cfg.extra["recipe_auto"] = auto
    cfg.recipe = name
    return cfg


def defaults() -> dict:
    """Every setting's default."""
    return TrainConfig().to_dict()


def in_groups(*groups: str) -> list[Setting]:
    """The settings of the given groups, in definition order."""
    return [s for s in SETTINGS.values() if s.group in groups]


def data_options(values: Mapping[str, Any], **overrides: Any) -> Any:
    """LoadOptions from settings (a run's saved config or given options); `overrides` that are
    not None win. Every command that reads images goes through here, so a saved run re-reads
    its data exactly as it was trained on it (CSV columns and image folder included)."""
    v = {**defaults(), **{k: x for k, x in values.items() if k in SETTINGS or k == "data"}}
    v.update({k: x for k, x in overrides.items() if x is not None})
    image_dir = v.get("image_dir")
    return LoadOptions(format=v["format"], image_size=v["image_size"], channels=v["channels"],
                       resize=v["resize"], val_split=v["val_split"], test_split=v["test_split"],
                       seed=v["seed"] if v.get("split_seed") is None else v["split_seed"],
                       task=v["task"],
                       image_dir=str(image_dir) if image_dir is not None else None,
                       columns=CsvColumns(v["path_column"], v["label_column"],
                                          v["numeric_column"], v["partition_column"],
                                          v["task_column"]),
                       skip_bad=v["skip_bad"], layout=v["layout"], crop_size=v["crop_size"],
                       value_range=tuple(v["value_range"]) if v["value_range"] else None)
