"""Model registry: every architecture is built by name with the data's shape and class count.

Builders: `builder(num_classes, in_channels, image_size, **kwargs) -> nn.Module`; kwargs come
from `--model-arg KEY=VALUE`. Builders of models with ImageNet weights (spec.pretrained) also
accept `pretrained: bool = False, weights_file: str | None = None` and return the network with
the loaded weights and a fresh head for `num_classes`; when weights cannot be had they raise
one CnnlabError saying how to get the file and pass --weights-file PATH.

Transfer protocol (models/protocol.py, TransferNet) implemented by every network we write
(seeds, resnet*, efficientnet-lite0, cnn):
- `freeze_groups() -> list[nn.Module]`: the feature extractor in input-to-output order;
  `--freeze N` freezes the first N groups. ResNet: [stem (conv1+bn1), layer1..layer4];
  EfficientNet-Lite0: [stem, its 7 block stages, head conv]; seed CNNs: each conv layer (with
  its BatchNorm) in order; MLPs: the hidden linear layers.
- `head() -> nn.Module`: the final classifier layer (train it, or replace it).
- `reset_head(num_classes) -> nn.Module`: replace the head by a fresh layer of the same kind
  with `num_classes` outputs (using the model's own init), and return it.
Code that must also handle foreign modules should test `hasattr(net, "freeze_groups")`.
"""

from __future__ import annotations

import importlib
import inspect
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from cnnlab.errors import CnnlabError, WrongModelError
from cnnlab.models.classifier import check_output

Builder = Callable[..., nn.Module]


@dataclass
class ModelSpec:
    """A registered architecture and what it needs from the data."""

    name: str
    builder: Builder
    description: str
    family: str = "general"  # "general", "seed" or "pretrained"
    fixed_size: int | None = None  # the only input size it accepts (None: any)
    min_size: int = 1
    default_size: int | None = None  # image size to decode files at when none is given
    channels: tuple[int, ...] = (1, 3)
    pretrained: bool = False  # ImageNet weights available
    defaults: dict = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}


def register(name: str, description: str, **spec: object) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(num_classes, in_channels, image_size, **kwargs)` as `name`."""

    def deco(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelSpec(name=name, builder=builder, description=description,
                                    **spec)  # type: ignore[arg-type]
        return builder

    return deco


def _ensure_loaded() -> None:
    # Importing the package registers every built-in model.
    import cnnlab.models  # noqa: F401


def list_models() -> list[ModelSpec]:
    """All registered models, sorted by name."""
    _ensure_loaded()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def custom_spec(name: str) -> ModelSpec:
    """A builder in any importable module, named `package.module:function`.

    The checkpoint records the name; loading it imports that module again, so a checkpoint of
    a custom model only loads where the module is importable (never from the checkpoint)."""
    module, _, func = name.partition(":")
    if not module or not func.isidentifier():
        raise CnnlabError(f"--model {name!r}: a custom model is package.module:function")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise CnnlabError(f"model {name!r}: cannot import {module!r} ({exc}); make it "
                          "importable (PYTHONPATH or pip install) to train or load it") from None
    builder = getattr(mod, func, None)
    if not callable(builder):
        raise CnnlabError(f"model {name!r}: {module} has no function {func!r}")
    doc = (builder.__doc__ or "").strip().splitlines()
    return ModelSpec(name=name, builder=builder, description=doc[0] if doc else "custom model",
                     family="custom", min_size=int(getattr(builder, "min_size", 1)),
                     default_size=getattr(builder, "default_size", None))


def get_spec(name: str) -> ModelSpec:
    """The spec registered as `name` (or a custom `module:function`), or a one-line error."""
    if ":" in name:
        return custom_spec(name)
    _ensure_loaded()
    if name not in _REGISTRY:
        raise CnnlabError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}"
                          " (see `cnnlab models`)")
    return _REGISTRY[name]


def spec_named_by_file(name: object, source: object, model: str | None = None,
                       trust: bool = False) -> ModelSpec:
    """The spec a file (checkpoint, config.yaml) names, never importing code the file alone
    chooses: a registered model, or a custom `module:function` only when the user names the
    same builder at load time (`model`) or trusts the file (`trust`)."""
    if not isinstance(name, str) or not name.strip():
        raise CnnlabError(f"{source}: its model name {name!r} is not a model name")
    if model is not None and model != name:
        raise WrongModelError(f"{source}: holds a {name!r} model, not {model!r}")
    if ":" in name and model != name and not trust:
        raise CnnlabError(f"{source}: its model {name!r} is code outside cnnlab, and cnnlab never "
                          "imports code that a file names; if you trust that module, name it "
                          f"yourself: --model {name} (model={name!r} in Python), or pass "
                          "--trust-model-code (trust_code=True)")
    return get_spec(name)


# Keywords a file's model arguments may never set: the data shape comes from the record's own
# fields, and weights come from the checkpoint, never from a path or download the file names.
_RESERVED_ARGS = ("num_classes", "in_channels", "image_size", "pretrained", "weights_file")


def _plain(value: object, depth: int = 0) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)) and depth < 2 and len(value) <= 64:
        return all(_plain(v, depth + 1) for v in value)
    return False


def check_file_args(spec: ModelSpec, args: object, source: object) -> dict:
    """A file's model arguments, accepted only as plain values the builder's own signature
    takes (never a dict routed into another function)."""
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise CnnlabError(f"{source}: model arguments {args!r} are not KEY: VALUE pairs")
    params = inspect.signature(spec.builder).parameters
    any_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    takes = [n for n, p in params.items() if n not in _RESERVED_ARGS and p.kind in (
        inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for key, value in args.items():
        if not isinstance(key, str) or not key.isidentifier() or key in _RESERVED_ARGS or \
                (key not in takes and not any_kw):
            raise CnnlabError(f"{source}: model {spec.name!r} takes no argument {key!r} (it "
                              f"takes: {', '.join(takes) or 'none'})")
        if not _plain(value):
            raise CnnlabError(f"{source}: model argument {key}={str(value)[:80]!r} is not a "
                              "plain number, string or list")
    return dict(args)


def check_input(spec: ModelSpec, in_channels: int, image_size: int) -> None:
    """Fail with one clear line when the data's shape does not fit the model."""
    if in_channels not in spec.channels:
        need = " or ".join(map(str, spec.channels))
        raise CnnlabError(f"model {spec.name!r} needs {need}-channel images, the data has "
                          f"{in_channels} (use --channels)")
    if spec.fixed_size is not None and image_size != spec.fixed_size:
        raise CnnlabError(f"model {spec.name!r} needs {spec.fixed_size}x{spec.fixed_size} images, "
                          f"the data is {image_size}x{image_size} (use --image-size "
                          f"{spec.fixed_size})")
    if image_size < spec.min_size:
        raise CnnlabError(f"model {spec.name!r} needs images of at least {spec.min_size}x"
                          f"{spec.min_size}, the data is {image_size}x{image_size} "
                          f"(use --image-size {spec.min_size})")


def build_model(name: str, num_classes: int, in_channels: int, image_size: int,
                **kwargs: object) -> nn.Module:
    """Build the bare network (no normalization) for the given data shape."""
    spec = get_spec(name)
    check_input(spec, in_channels, image_size)
    args = {**spec.defaults, **kwargs}
    try:
        with warnings.catch_warnings():
            # "Initializing zero-element tensors is a no-op": reported below as one line
            warnings.filterwarnings("ignore", message=".*zero-element tensors.*")
            net = spec.builder(num_classes=num_classes, in_channels=in_channels,
                               image_size=image_size, **args)
    except CnnlabError:
        raise
    except Exception as exc:  # noqa: BLE001 - a custom builder's own bug is the user's to see
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        if spec.family == "custom" and (where := _frame_in(spec.builder, exc)) is not None:
            raise CnnlabError(f"your model builder {name} raised {type(exc).__name__}"
                              f"{': ' + detail if detail else ''} ({where})") from None
        if not isinstance(exc, TypeError):
            # A built-in model refusing its arguments (width=-4: torch refuses a negative size).
            raise CnnlabError(
                f"model {name!r} cannot be built with {args} for {in_channels}x{image_size}x"
                f"{image_size} images and {num_classes} classes ({type(exc).__name__}: "
                f"{detail}); check the --model-arg values") from None
        raise CnnlabError(f"model {name!r}: bad arguments {args} ({exc})") from None
    if not isinstance(net, nn.Module):
        raise CnnlabError(f"model {name!r}: the builder returned {type(net).__name__}, not a "
                          "torch.nn.Module")
    if any(p.numel() == 0 for p in net.parameters()):
        raise CnnlabError(f"model {name!r} with {args} has a layer of size 0; check the "
                          "--model-arg values")
    if spec.family == "custom":  # the built-in models are tested; a user's builder is not
        check_output(net, name, num_classes, in_channels, image_size)
    return net


def _frame_in(builder: Builder, exc: BaseException) -> str | None:
    """"file.py:LINE" of the last traceback frame inside the builder's own module: where the
    user's code raised (or called what raised); None when the error never reached it (a call
    with arguments its signature does not take)."""
    try:
        source = inspect.getsourcefile(builder)
    except TypeError:
        return None
    if source is None:
        return None
    here = os.path.realpath(source)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if os.path.realpath(f.filename) == here]
    return f"{os.path.basename(here)}:{frames[-1].lineno}" if frames else None
