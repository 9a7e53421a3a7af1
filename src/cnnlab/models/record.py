"""A network rebuilt from the architecture record a file holds (checkpoint, export sidecar).

The record is data from a file the user may not have written, so every field is checked
before anything is built, and the model it names goes through registry.spec_named_by_file:
a registered architecture, or a custom builder only when the user names it or trusts it.
"""

from __future__ import annotations

from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import Classifier
from cnnlab.models.registry import build_model, check_file_args, spec_named_by_file

# Bounds of a plausible record: a file asking for more is damaged or hostile.
MAX_CLASSES = 100_000
MAX_IMAGE_SIZE = 4096
MAX_CHANNELS = 4


def _int_field(arch: dict, key: str, hi: int, source: object) -> int:
    value = arch.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise CnnlabError(f"{source}: architecture field {key}={value!r} is not a whole number "
                          f"from 1 to {hi}")
    return value


def check_arch(arch: object, source: object, model: str | None = None,
               trust: bool = False) -> dict:
    """The architecture record, each field checked; a custom model only as spec_named_by_file
    allows. One line naming the file, the field and the value when something is wrong."""
    if not isinstance(arch, dict):
        raise CnnlabError(f"{source}: its architecture record is not a mapping")
    spec = spec_named_by_file(arch.get("name"), source, model, trust)
    return {"name": spec.name, "args": check_file_args(spec, arch.get("args"), source),
            "num_classes": _int_field(arch, "num_classes", MAX_CLASSES, source),
            "in_channels": _int_field(arch, "in_channels", MAX_CHANNELS, source),
            "image_size": _int_field(arch, "image_size", MAX_IMAGE_SIZE, source)}


def check_classes(classes: object, num_classes: int, source: object) -> list[str]:
    """The class names a file holds: one string per output of the model."""
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
        raise CnnlabError(f"{source}: its class names are not a list of strings")
    if len(classes) != num_classes:
        raise CnnlabError(f"{source}: it names {len(classes)} classes for a model with "
                          f"{num_classes} outputs")
    return list(classes)


def rebuild(arch: dict, state: dict | None = None, source: object = "checkpoint",
            model: str | None = None, trust: bool = False) -> Classifier:
    """Rebuild a classifier from an architecture record (and load `state` if given).

    `model`/`trust`: the custom builder the user named, or their consent to the file's own
    (see registry.spec_named_by_file); a registered model needs neither."""
    arch = check_arch(arch, source, model, trust)
    net = build_model(arch["name"], arch["num_classes"], arch["in_channels"],
                      arch["image_size"], **arch["args"])
    c = arch["in_channels"]
    classifier = Classifier(net, [0.0] * c, [1.0] * c)
    if state is not None:
        load_state(classifier, state)
    return classifier


def load_state(model: nn.Module, state: dict) -> None:
    """Load weights; a mismatch (another architecture) is one clear line."""
    if not isinstance(state, dict):
        raise CnnlabError("checkpoint weights are not a state dict")
    try:
        result = model.load_state_dict(state, strict=False)
    except (RuntimeError, TypeError, AttributeError) as exc:
        msg = str(exc).split("\n")
        detail = next((m.strip() for m in msg if "size mismatch" in m), msg[0])
        raise CnnlabError(f"checkpoint weights do not fit this model ({detail[:200]})") from None
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        raise CnnlabError(f"checkpoint weights do not fit this model ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected keys, e.g. "
                          f"{(missing or unexpected)[0]})")
