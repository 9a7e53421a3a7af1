"""Build the classifier a run trains: architecture, normalization, optimizer parameter groups."""

from __future__ import annotations

import torch

from cnnlab.data.imageset import ImageSet
from cnnlab.data.normalize import parse_normalize
from cnnlab.errors import CnnlabError
from cnnlab.models import Classifier, build_model, get_spec
from cnnlab.settings import TrainConfig, parse_class_weights
from cnnlab.train import transfer
from cnnlab.train.optim import OPTIMIZERS
from cnnlab.train.transfer import Built


def arch_of(cfg: TrainConfig, train: ImageSet) -> dict:
    """Architecture record stored in checkpoints: enough to rebuild the network alone."""
    return {"name": cfg.model, "args": dict(cfg.model_args), "num_classes": train.num_classes,
            "in_channels": train.channels, "image_size": train.image_size[0]}


def build_classifier(cfg: TrainConfig, train: ImageSet) -> Built:
    """A fresh classifier for this data, normalized with the training split's statistics."""
    arch = arch_of(cfg, train)
    if transfer.is_transfer(cfg):  # pretrained weights, --init-from or --freeze
        return transfer.build(cfg, train, arch)
    net = build_model(arch["name"], arch["num_classes"], arch["in_channels"],
                      arch["image_size"], **arch["args"])
    spec = "train" if cfg.normalize == "auto" else cfg.normalize
    mean, std = parse_normalize(spec, train.channels, train.images)
    return Built(Classifier(net, mean, std), arch, [])


def param_groups(model: Classifier, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters; no weight decay on biases and normalization weights."""
    if transfer.uses_lr_mult(cfg):  # head at the full rate, backbone at --backbone-lr-mult
        return transfer.param_groups(model, cfg)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    if not decay and not no_decay:
        raise CnnlabError("no trainable parameters (everything is frozen)")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(groups: list[dict], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named in the config, from the registry in train/optim.py."""
    lr = cfg.resolved_lr()
    for g in groups:
        g["lr"] = lr * g.pop("lr_mult", 1.0)
        g["initial_lr"] = g["lr"]
    return OPTIMIZERS[cfg.optimizer].build(groups, lr, {"momentum": cfg.momentum})


def class_weight_tensor(cfg: TrainConfig, train: ImageSet) -> torch.Tensor | None:
    """Per-class loss weights: 'auto' (inverse frequency) or explicit values."""
    cw = cfg.class_weights
    if cw is None or cw == "none":
        return None
    k = train.num_classes
    if cw == "auto":
        counts = torch.tensor(train.class_counts(), dtype=torch.float32).clamp_min(1)
        return counts.sum() / (k * counts)
    if isinstance(cw, str):
        cw = parse_class_weights(cw, train.classes)
    if len(cw) != k:
        raise CnnlabError(f"--class-weights has {len(cw)} values for {k} classes "
                          f"({', '.join(train.classes)})")
    if any(w < 0 for w in cw):
        raise CnnlabError("--class-weights must not be negative")
    return torch.tensor(cw, dtype=torch.float32)


def model_image_size(cfg: TrainConfig) -> int | None:
    """The image size files should be decoded at for this model when none is given."""
    spec = get_spec(cfg.model)
    return spec.fixed_size or spec.default_size
