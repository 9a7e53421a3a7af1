"""Transfer learning: pretrained backbones, freezing, backbone learning rates, --init-from.

Every network may implement the protocol of models/protocol.py: `freeze_groups()` (feature
groups from input to output: stem, stages, or each conv layer) and `head()` (the final
classifier layer). Networks without it get a generic answer: the groups are the conv layers
in module order (each with the BatchNorm that follows it), and the head is the last nn.Linear
(or, with none, the last nn.Conv2d).

Frozen parts are not only excluded from the optimizer: they also stay in eval mode while the
head trains, so BatchNorm statistics and dropout inside them do not change. That is what makes
a frozen backbone a fixed feature extractor, and the feature cache (train/features.py) exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from cnnlab.checkpoint import load_checkpoint
from cnnlab.data.imageset import ImageSet
from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD, channel_mean_std
from cnnlab.errors import CnnlabError
from cnnlab.models import Classifier, build_model, get_spec, list_models
from cnnlab.settings import TrainConfig

_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


# ---- the protocol, with a fallback for any network ------------------------------------------
def head_of(net: nn.Module) -> nn.Module:
    """The final classifier layer: `net.head()` when the network defines it, else the last
    nn.Linear (or last nn.Conv2d) in module order."""
    method = getattr(type(net), "head", None)
    if callable(method) and not isinstance(method, nn.Module):
        head = net.head()
        if isinstance(head, nn.Module):
            return head
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    if convs:
        return convs[-1]
    raise CnnlabError(f"cannot find the classifier layer of {type(net).__name__}")


def freeze_groups_of(net: nn.Module) -> list[nn.Module]:
    """Feature groups from input to output: `net.freeze_groups()` or each conv layer (with the
    normalization layer right after it); networks without convs: each Linear but the head."""
    if callable(getattr(net, "freeze_groups", None)):
        return list(net.freeze_groups())
    head = head_of(net)
    groups: list[list[nn.Module]] = []
    kind = nn.Conv2d if any(isinstance(m, nn.Conv2d) for m in net.modules()) else nn.Linear
    for m in net.modules():
        if m is head:
            continue
        if isinstance(m, kind):
            groups.append([m])
        elif isinstance(m, _NORM) and groups and len(groups[-1]) == 1:
            groups[-1].append(m)
    return [nn.ModuleList(g) for g in groups]


# ---- freezing ---------------------------------------------------------------------------------
@dataclass
class Frozen:
    """What --freeze froze: modules kept in eval mode while training, and the head."""

    setting: str
    modules: list[nn.Module] = field(default_factory=list)
    head: nn.Module | None = None  # set with --freeze all: the only part that trains
    groups_total: int = 0

    def after_train(self) -> None:
        """Call right after model.train(): frozen parts back to eval mode (BN stats fixed)."""
        for m in self.modules:
            m.eval()
        if self.head is not None:
            self.head.train()

    @property
    def all(self) -> bool:
        """True with --freeze all (the backbone is a fixed feature extractor)."""
        return self.head is not None


def parse_freeze(value: str | int | None) -> str | int:
    """'all', 'none' or a number of leading groups (0 = none)."""
    text = str(value if value is not None else "none").strip().lower()
    if text in ("all", "none"):
        return text
    try:
        n = int(text)
    except ValueError:
        raise CnnlabError(f"--freeze {value!r}: use all, none or a number of layers") from None
    if n < 0:
        raise CnnlabError(f"--freeze {value!r}: the number of frozen layers must be >= 0")
    return "none" if n == 0 else n


def apply_freeze(model: Classifier, setting: str | int | None) -> Frozen | None:
    """Freeze the backbone ('all'), its first N groups, or nothing; returns what was frozen."""
    what = parse_freeze(setting)
    if what == "none":
        return None
    net = model.net
    head = head_of(net)
    head_params = {id(p) for p in head.parameters()}
    if what == "all":
        for p in model.parameters():
            if id(p) not in head_params:
                p.requires_grad_(False)
        return Frozen("all", [model], head, len(freeze_groups_of(net)))
    groups = freeze_groups_of(net)
    if what > len(groups):
        raise CnnlabError(f"--freeze {what}: {type(net).__name__} has only {len(groups)} layer "
                          f"groups to freeze (use --freeze all to train only the head)")
    for g in groups[:what]:
        for p in g.parameters():
            p.requires_grad_(False)
    return Frozen(str(what), list(groups[:what]), None, len(groups))


def param_groups(model: Classifier, cfg: TrainConfig) -> list[dict]:
    """Optimizer groups: head at the full learning rate, the rest at --backbone-lr-mult times it;
    no weight decay on biases and normalization weights."""
    head_ids = {id(p) for p in head_of(model.net).parameters()}
    buckets: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_head = id(p) in head_ids
        no_decay = p.ndim <= 1 or name.endswith(".bias")
        buckets.setdefault((is_head, no_decay), []).append(p)
    if not buckets:
        raise CnnlabError("no trainable parameters (everything is frozen)")
    return [{"params": params, "weight_decay": 0.0 if no_decay else cfg.weight_decay,
             "lr_mult": 1.0 if is_head else cfg.backbone_lr_mult}
            for (is_head, no_decay), params in sorted(buckets.items())]


def uses_lr_mult(cfg: TrainConfig) -> bool:
    """The backbone learning-rate factor applies when starting from learned weights."""
    return bool(cfg.pretrained or cfg.weights_file or cfg.init_from)


# ---- building ---------------------------------------------------------------------------------
def is_transfer(cfg: TrainConfig) -> bool:
    """True when the run needs this module (pretrained, --init-from or --freeze)."""
    return uses_lr_mult(cfg) or parse_freeze(cfg.freeze) != "none"


def imagenet_stats(channels: int) -> tuple[list[float], list[float]]:
    """ImageNet mean/std for 3 channels; their averages for grey images."""
    if channels == 3:
        return list(IMAGENET_MEAN), list(IMAGENET_STD)
    return [sum(IMAGENET_MEAN) / 3] * channels, [sum(IMAGENET_STD) / 3] * channels


@dataclass
class Built:
    """The classifier plus what a checkpoint needs to rebuild it, and what was done to it."""

    model: Classifier
    arch: dict
    notes: list[str]
    frozen: Frozen | None = None  # when --freeze froze something
    info: dict = field(default_factory=dict)  # transfer record for metrics.json


def build(cfg: TrainConfig, train: ImageSet, arch: dict) -> Built:
    """Build the run's classifier: ImageNet weights, --init-from layers, then --freeze."""
    spec = get_spec(cfg.model)
    notes: list[str] = []
    info: dict = {}
    kwargs: dict = {}
    if cfg.pretrained or cfg.weights_file:
        if not spec.pretrained:
            have = ", ".join(s.name for s in list_models() if s.pretrained) or "none"
            raise CnnlabError(f"model {cfg.model!r} has no pretrained weights (models with "
                              f"them: {have})")
        kwargs = {"pretrained": True, "weights_file": cfg.weights_file}
        mean, std = imagenet_stats(arch["in_channels"])
        where = cfg.weights_file or "ImageNet"
        notes.append(f"pretrained: {cfg.model} with {where} weights, new {arch['num_classes']}"
                     f"-class head; inputs normalized with ImageNet mean/std at "
                     f"{arch['image_size']}x{arch['image_size']}")
        info["pretrained"] = str(where)
        info["normalization"] = "imagenet"
    else:
        mean, std = channel_mean_std(train.images)
    if cfg.normalize != "auto":  # an explicit --normalize wins over both defaults
        from cnnlab.data.normalize import parse_normalize

        mean, std = parse_normalize(cfg.normalize, arch["in_channels"], train.images)
        info["normalization"] = cfg.normalize
    net = build_model(arch["name"], arch["num_classes"], arch["in_channels"], arch["image_size"],
                      **arch["args"], **kwargs)
    model = Classifier(net, mean, std)
    if cfg.init_from:
        report = init_from(model, cfg.init_from, arch["name"])
        info["init_from"] = report
        notes += init_notes(report)
    frozen = apply_freeze(model, cfg.freeze)
    if frozen is not None:
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        n_all = sum(p.numel() for p in model.parameters())
        what = "all layers but the head" if frozen.all else \
            f"the first {frozen.setting} of {frozen.groups_total} layer groups"
        notes.append(f"freeze: {what}; {n_train:,} of {n_all:,} parameters train")
        info["freeze"] = {"setting": frozen.setting, "groups_total": frozen.groups_total,
                          "trainable_params": n_train, "total_params": n_all}
    if uses_lr_mult(cfg) and not (frozen is not None and frozen.all) \
            and cfg.backbone_lr_mult != 1.0:
        notes.append(f"backbone learning rate: {cfg.backbone_lr_mult:g} x the head's")
        info["backbone_lr_mult"] = cfg.backbone_lr_mult
    return Built(model, arch, notes, frozen, info)


# ---- --init-from ------------------------------------------------------------------------------
def _layer(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else key


def init_from(model: Classifier, path: str | Path, model_name: str = "") -> dict:
    """Copy every tensor of checkpoint `path` whose name and shape fit `model`; the rest keeps
    its fresh initialisation. Returns which layers were copied, re-initialised and ignored."""
    ckpt = load_checkpoint(path)
    src = ckpt.get("model_state")
    if not isinstance(src, dict):
        raise CnnlabError(f"{path}: no model weights in this checkpoint")
    own = model.state_dict()
    new = dict(own)
    copied, reinit, fresh = {}, {}, {}
    for k, v in own.items():
        layer = _layer(k)
        if k not in src:
            fresh.setdefault(layer, []).append(k)
        elif tuple(src[k].shape) != tuple(v.shape):
            reinit.setdefault(layer, []).append(
                f"{k.rsplit('.', 1)[-1]} {tuple(src[k].shape)} -> {tuple(v.shape)}")
        else:
            new[k] = src[k].to(v.dtype)
            copied.setdefault(layer, []).append(k)
    unused = sorted({_layer(k) for k in src if k not in own})
    # A layer half copied (weight fits, bias does not) would be inconsistent: re-init it all.
    for layer in list(copied):
        if layer in reinit:
            for k in copied.pop(layer):
                new[k] = own[k]
    src_arch = (ckpt.get("arch") or {}).get("name", "?")
    weight_layers = [c for c in copied if c not in ("mean", "std")]
    if not weight_layers:
        raise CnnlabError(f"{path}: no layer of this {src_arch} checkpoint fits model "
                          f"{model_name or type(model.net).__name__} (use --model {src_arch})")
    model.load_state_dict(new)
    return {"checkpoint": str(path), "source_model": src_arch,
            "source_classes": list(ckpt.get("classes") or []),
            "copied": weight_layers,
            "reinitialised": dict(reinit),
            "not_in_checkpoint": sorted(fresh),
            "unused_from_checkpoint": unused,
            "normalization": "checkpoint" if "mean" in copied else "train split"}


def init_notes(report: dict) -> list[str]:
    """Human-readable lines for an init_from report (printed and stored in metrics.json)."""
    name = lambda layer: layer.removeprefix("net.")  # noqa: E731
    lines = [f"init-from {report['checkpoint']} ({report['source_model']}): copied "
             f"{len(report['copied'])} layers ({', '.join(name(c) for c in report['copied'])})"]
    for layer, what in report["reinitialised"].items():
        lines.append(f"re-initialised {name(layer)}: shape differs ({'; '.join(what)})")
    fresh = [name(x) for x in report["not_in_checkpoint"] if x not in ("mean", "std")]
    if fresh:
        lines.append(f"not in the checkpoint, freshly initialised: {', '.join(fresh)}")
    if report["unused_from_checkpoint"]:
        lines.append("checkpoint layers not used: "
                     f"{', '.join(name(x) for x in report['unused_from_checkpoint'])}")
    if report["normalization"] == "checkpoint":
        lines.append("normalization: the checkpoint's mean/std (the copied layers expect it)")
    return lines
