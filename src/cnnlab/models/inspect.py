"""Per-layer parameter accounting: shapes, weights, biases and the hand formula for each layer.

Also the conv arithmetic of the courses: output sizes of a conv/pool stack and the activation
map of a small matrix under a kernel, zero padding and max/average pooling.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.models.registry import build_model, get_spec


def fmt_int(n: int) -> str:
    """1216 -> '1,216'."""
    return f"{n:,}"


def fmt_bytes(n: int) -> str:
    """Bytes in the largest sensible decimal unit (1 MB = 1,000,000 bytes)."""
    for unit, size in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9,
          "gb": 10**9, "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30,
          "gib": 2**30}


def parse_size(text: str) -> int:
    """'1MB' -> 1,000,000; '1MiB' -> 1,048,576; '500KB'; '1200' (bytes)."""
    m = _SIZE_RE.match(str(text))
    unit = (m.group(2) or "").lower() if m else None
    if not m or unit not in _UNITS:
        raise CnnlabError(f"size {text!r}: expected a number with an optional unit, e.g. 1MB, "
                          "500KB, 1MiB")
    return int(float(m.group(1)) * _UNITS[unit])


@dataclass
class LayerRow:
    """One layer of the table."""

    name: str
    type: str
    output_shape: list[int] | None
    weights: int
    biases: int
    other: int  # parameters that are neither (none in the built-in models)
    formula: str
    trainable: bool = True

    @property
    def params(self) -> int:
        """All parameters of the layer."""
        return self.weights + self.biases + self.other


@dataclass
class ModelSummary:
    """Everything `cnnlab inspect model` prints."""

    model: str
    num_classes: int
    in_channels: int
    image_size: int
    input_shape: list[int]
    output_shape: list[int]
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    buffers: int
    saved_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready form (same data as the table)."""
        d = asdict(self)
        for row, src in zip(d["layers"], self.layers, strict=True):
            row["params"] = src.params
        d["saved_size"] = fmt_bytes(self.saved_bytes)
        return d


def layer_formula(mod: nn.Module, weights: int, biases: int) -> str:
    """The hand computation of a layer's parameter count, e.g. '(3·5·5+1)·16 = 1,216'."""
    total = weights + biases
    if isinstance(mod, nn.Conv2d):
        kh, kw = mod.kernel_size
        cin = mod.in_channels // mod.groups
        fan = f"{cin}·{kh}·{kw}"  # cin = in_channels / groups (1 for depthwise)
        inner = f"({fan}+1)" if biases else fan
        return f"{inner}·{mod.out_channels} = {fmt_int(total)}"
    if isinstance(mod, nn.Linear):
        inner = f"({mod.in_features}+1)" if biases else f"{mod.in_features}"
        return f"{inner}·{mod.out_features} = {fmt_int(total)}"
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
        if total:
            n = weights or biases
            return f"{'2·' if weights and biases else ''}{n} = {fmt_int(total)}"
        return "0"
    return "0" if total == 0 else fmt_int(total)


def _own_params(mod: nn.Module) -> tuple[int, int, int, bool]:
    w = b = o = 0
    trainable = True
    for pname, p in mod.named_parameters(recurse=False):
        trainable = trainable and p.requires_grad
        if pname == "weight":
            w += p.numel()
        elif pname == "bias":
            b += p.numel()
        else:
            o += p.numel()
    return w, b, o, trainable


def saved_size(model: nn.Module) -> int:
    """Bytes of torch.save(model.state_dict()) - the size of the saved weights file."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def summarize(net: nn.Module, input_shape: tuple[int, ...], model_name: str = "",
              num_classes: int = 0) -> ModelSummary:
    """Run one dummy batch through `net` and account for every layer with parameters or output."""
    shapes: dict[str, list[int]] = {}
    order: list[str] = []  # first-call order: the table follows the forward pass
    calls: dict[str, int] = {}  # a module reused in forward (one pool for all) shows "×N"
    hooks = []
    # Every leaf, and every container holding parameters of its own, with those parameters.
    kept = [(name, mod, _own_params(mod)) for name, mod in net.named_modules() if name]
    kept = [k for k in kept if any(k[2][:3]) or next(k[1].children(), None) is None]
    for name, mod, _ in kept:

        def hook(_m: nn.Module, _i: object, out: object, key: str = name) -> None:
            calls[key] = calls.get(key, 0) + 1
            if isinstance(out, torch.Tensor) and key not in shapes:
                shapes[key] = list(out.shape[1:])
                order.append(key)

        hooks.append(mod.register_forward_hook(hook))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, *input_shape))
    except RuntimeError as exc:
        raise CnnlabError(f"{model_name or 'model'}: forward pass failed for input "
                          f"{list(input_shape)} ({str(exc).splitlines()[0][:160]})") from None
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    rank = {k: i for i, k in enumerate(order)}
    kept.sort(key=lambda k: rank.get(k[0], len(rank)))  # never-called modules last
    rows: list[LayerRow] = []
    for name, mod, (w, b, o, trainable) in kept:
        if name not in shapes and not (w or b or o):
            continue  # a leaf that never ran (e.g. an unused Identity) and holds nothing
        kind = type(mod).__name__ + (f" ×{calls[name]}" if calls.get(name, 0) > 1 else "")
        rows.append(LayerRow(name, kind, shapes.get(name), w, b, o,
                             layer_formula(mod, w, b), trainable))
    total = sum(p.numel() for p in net.parameters())
    trainable_n = sum(p.numel() for p in net.parameters() if p.requires_grad)
    buffers = sum(t.numel() for t in net.buffers())
    accounted = sum(r.params for r in rows)
    notes = []
    if accounted != total:
        notes.append(f"{fmt_int(total - accounted)} parameters are shared or not in any layer")
    if buffers:
        notes.append(f"{fmt_int(buffers)} buffer values (BatchNorm running statistics) are saved "
                     "too but not learned")
    return ModelSummary(model_name, num_classes, input_shape[0], input_shape[-1],
                        list(input_shape), list(out.shape[1:]), rows, total, trainable_n,
                        buffers, saved_size(net), notes)


def inspect_model(name: str, num_classes: int | None = None, image_size: int | None = None,
                  channels: int | None = None, **kwargs: object) -> ModelSummary:
    """Build a registered model for the given shape and summarize it."""
    spec = get_spec(name)
    size = image_size or spec.fixed_size or spec.default_size or 32
    c = channels or (3 if 3 in spec.channels else spec.channels[0])
    k = num_classes or 10
    net = build_model(name, k, c, size, **kwargs)
    return summarize(net, (c, size, size), name, k)


# ------------------------------------------------------------------ conv arithmetic


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
             ceil: bool = False) -> int:
    """floor((size + 2·padding - dilation·(kernel-1) - 1) / stride) + 1 (ceil with ceil=True)."""
    num = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (math.ceil(num / stride) if ceil else num // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1  # PyTorch: the last window must start inside the input or left padding
    return out


@dataclass
class StackRow:
    """One layer of a conv/pool/fc stack."""

    layer: str
    output: list[int]
    formula: str
    params: int
    param_formula: str


_LAYER_RE = re.compile(r"^(conv|pool|maxpool|avgpool|fc|linear)((?::-?\d+)*)$")
_LAYER_FORMS = "conv:OUT:K[:STRIDE[:PAD]], pool:K[:STRIDE], avgpool:K[:STRIDE] or fc:OUT"


def parse_stack(text: str) -> list[tuple[str, list[int]]]:
    """'conv:16:5:2:2,pool:2,fc:64' -> [("conv", [16, 5, 2, 2]), ("pool", [2]), ("fc", [64])]."""
    items = []
    for raw in re.split(r"[,\s]+", text.strip()):
        if not raw:
            continue
        m = _LAYER_RE.match(raw.lower())
        if not m:
            raise CnnlabError(f"layer {raw!r}: expected {_LAYER_FORMS}")
        kind = {"maxpool": "pool", "linear": "fc"}.get(m.group(1), m.group(1))
        nums = [int(v) for v in m.group(2).split(":") if v]
        need = {"conv": (2, 4), "pool": (1, 2), "avgpool": (1, 2), "fc": (1, 1)}[kind]
        if not need[0] <= len(nums) <= need[1] or any(v < 0 for v in nums) or \
                (nums and min(nums[: 2 if kind == "conv" else 1]) < 1):
            raise CnnlabError(f"layer {raw!r}: wrong numbers for {kind}; expected {_LAYER_FORMS}")
        items.append((kind, nums))
    if not items:
        raise CnnlabError("empty layer stack")
    return items


def stack_shapes(stack: list[tuple[str, list[int]]], channels: int, size: int,
                 height: int | None = None, bias: bool = True) -> list[StackRow]:
    """Output shape and parameter count of each layer, with the formulas."""
    c, h, w = channels, height or size, size
    flat: int | None = None
    rows: list[StackRow] = []
    for kind, nums in stack:
        if kind != "fc" and flat is not None:
            raise CnnlabError(f"a {'conv' if kind == 'conv' else 'pooling'} layer cannot follow a "
                              "fully connected one")
        if kind == "conv":
            out, k = nums[0], nums[1]
            s = nums[2] if len(nums) > 2 else 1
            p = nums[3] if len(nums) > 3 else 0
            nh, nw = conv_out(h, k, s, p), conv_out(w, k, s, p)
            if nh < 1 or nw < 1:
                raise CnnlabError(f"conv {k}x{k} stride {s} pad {p} does not fit a {h}x{w} input")
            formula = f"⌊({w} + 2·{p} − {k}) / {s}⌋ + 1 = {nw}"
            n = (c * k * k + int(bias)) * out
            pf = f"({c}·{k}·{k}{'+1' if bias else ''})·{out} = {fmt_int(n)}"
            rows.append(StackRow(f"conv {k}x{k}/{s} pad {p} -> {out}", [out, nh, nw], formula,
                                 n, pf))
            c, h, w = out, nh, nw
        elif kind in ("pool", "avgpool"):
            k = nums[0]
            s = nums[1] if len(nums) > 1 else k
            nh, nw = conv_out(h, k, s), conv_out(w, k, s)
            if nh < 1 or nw < 1:
                raise CnnlabError(f"pool {k}x{k} does not fit a {h}x{w} input")
            name = "max-pool" if kind == "pool" else "avg-pool"
            rows.append(StackRow(f"{name} {k}x{k}/{s}", [c, nh, nw],
                                 f"⌊({w} − {k}) / {s}⌋ + 1 = {nw}", 0, "0"))
            h, w = nh, nw
        else:
            out = nums[0]
            fan = flat if flat is not None else c * h * w
            src = f"{fan}" if flat is not None else f"{c}·{h}·{w}"
            n = (fan + int(bias)) * out
            pf = f"({src}{'+1' if bias else ''})·{out} = {fmt_int(n)}"
            rows.append(StackRow(f"fc -> {out}", [out], f"{fan} inputs", n, pf))
            flat = out
    return rows


def parse_matrix(text: str, what: str) -> torch.Tensor:
    """'1 2 3; 4 5 6' (rows split by ';' or newlines, values by spaces or commas)."""
    rows = [r for r in re.split(r"[;\n]", text.strip()) if r.strip()]
    try:
        vals = [[float(v) for v in re.split(r"[,\s]+", r.strip()) if v] for r in rows]
    except ValueError:
        raise CnnlabError(f"{what} {text!r}: expected numbers like '1 2; 3 4'") from None
    if not vals or any(len(r) != len(vals[0]) for r in vals) or not vals[0]:
        raise CnnlabError(f"{what} {text!r}: every row needs the same number of values")
    return torch.tensor(vals, dtype=torch.float64)


@dataclass
class ConvExercise:
    """Input (padded), activation map and pooled map of a single-channel convolution."""

    padded: list[list[float]]
    activation: list[list[float]]
    pooled: list[list[float]] | None
    steps: list[str]


def conv_exercise(matrix: torch.Tensor, kernel: torch.Tensor, padding: int = 0, stride: int = 1,
                  activation: str = "relu", pool: str = "max", pool_size: int = 2,
                  pool_stride: int | None = None, ceil: bool = False) -> ConvExercise:
    """Cross-correlate (as nn.Conv2d does), activate, then pool; like the COMP 6721 exercise."""
    if activation not in ("relu", "none"):
        raise CnnlabError(f"--activation {activation!r}: choose relu or none")
    if pool not in ("max", "avg", "none"):
        raise CnnlabError(f"--pool {pool!r}: choose max, avg or none")
    x = F.pad(matrix, (padding,) * 4) if padding else matrix
    kh, kw = kernel.shape
    if x.shape[0] < kh or x.shape[1] < kw:
        raise CnnlabError(f"kernel {kh}x{kw} is larger than the padded input "
                          f"{x.shape[0]}x{x.shape[1]}")
    z = F.conv2d(x[None, None], kernel[None, None], stride=stride)[0, 0]
    steps = []
    for i in range(min(z.shape[0], 1)):
        for j in range(min(z.shape[1], 2)):
            patch = x[i * stride:i * stride + kh, j * stride:j * stride + kw]
            terms = " + ".join(f"{_num(a)}·{_num(b)}" for a, b in
                               zip(patch.flatten().tolist(), kernel.flatten().tolist(),
                                   strict=True))
            steps.append(f"[{i},{j}]: {terms} = {_num(float(z[i, j]))}")
    a = z.clamp_min(0) if activation == "relu" else z
    pooled = None
    if pool != "none":
        ps = pool_stride or pool_size
        if a.shape[0] < pool_size or a.shape[1] < pool_size:
            raise CnnlabError(f"pool {pool_size}x{pool_size} is larger than the activation map "
                              f"{a.shape[0]}x{a.shape[1]}")
        # avg: partial windows (ceil) average over the cells that exist, as PyTorch does.
        pool_fn = F.max_pool2d if pool == "max" else F.avg_pool2d
        pooled = pool_fn(a[None, None], pool_size, ps, ceil_mode=ceil)[0, 0]
    return ConvExercise(x.tolist(), a.tolist(), None if pooled is None else pooled.tolist(), steps)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def format_matrix(m: list[list[float]]) -> str:
    """Right-aligned rows of numbers."""
    cells = [[_num(v) for v in row] for row in m]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  ".join(c.rjust(width) for c in row) for row in cells)
