"""Device and precision choices, shared by training and inference."""

from __future__ import annotations

import contextlib
import os

import torch

from cnnlab.choices import PRECISIONS
from cnnlab.errors import CnnlabError


def cpu_has_fast_bf16() -> bool:
    """True where the CPU computes bfloat16 natively (AVX512-BF16 or AMX), not by emulation."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(device: torch.device, precision: str, model: torch.nn.Module | None = None,
                      channels_last: bool = True) -> str:
    """'auto' -> 'bf16' where bfloat16 is native (CPUs with AVX512-BF16/AMX, bf16 GPUs), else
    '32'. Measured on a 2-core Zen 4: conv-net training steps 1.3-1.6x faster, accuracy within
    noise of fp32 (bench/results.md). Any other value is returned as it is.

    Given the `model` and its layout, a conv net left in NCHW on the CPU stays in float32:
    bf16 max-pooling is vectorised for channels_last only, and in NCHW it ate the gain
    (profile of USI myNet: 8.7 ms per pool call, 23% of the step)."""
    if precision != "auto":
        return precision
    if device.type == "cpu":
        if model is not None and not channels_last and \
                any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
            return "32"
        return "bf16" if cpu_has_fast_bf16() else "32"
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "32"


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an unavailable explicit choice is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    if name == "cuda":
        # Under torchrun each process drives the GPU of its local rank.
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name == "mps" and not _mps_available():
        raise CnnlabError("--device mps: Apple MPS is not available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device {name!r}; choose auto, cpu, cuda or mps") from None


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for `precision` ('32' means none)."""
    if precision not in PRECISIONS:
        raise CnnlabError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    precision = resolve_precision(device, precision)
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    if device.type == "cpu" and dtype == torch.float16:
        raise CnnlabError("--precision 16-mixed needs a GPU; use bf16 on the CPU")
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise CnnlabError("--precision bf16: this GPU has no bfloat16 support; use 16-mixed")
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """A GradScaler for float16 training (bf16 and fp32 have the range to need none)."""
    if precision != "16-mixed" or device.type not in ("cuda", "mps"):
        return None
    return torch.amp.GradScaler(device.type)


def use_channels_last(setting: bool | None, device: torch.device, model: torch.nn.Module,
                      sample: torch.Tensor | None = None) -> bool:
    """The setting when given; by default for conv nets on CUDA (cuDNN) and on the CPU (oneDNN:
    1.3x per step measured for the seeds' CNNs), if the model accepts channels_last input.

    `sample` (a few float input images on `device`) lets a model whose forward uses .view()
    on a feature map, which fails on channels_last tensors, fall back to contiguous layout.
    """
    if setting is not None:
        return bool(setting)
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    if not has_conv or device.type not in ("cuda", "cpu"):
        return False
    if sample is None or device.type == "cuda":
        return True
    was = model.training
    try:
        model.eval()
        with torch.inference_mode():
            model.to(memory_format=torch.channels_last)(
                sample.contiguous(memory_format=torch.channels_last))
        return True
    except RuntimeError:
        return False
    finally:
        model.to(memory_format=torch.contiguous_format)
        model.train(was)


def set_threads(n: int | None) -> None:
    """Use `n` intra-op threads (default: every core this process may run on)."""
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:
            n = os.cpu_count() or 1
        # torchrun starts LOCAL_WORLD_SIZE processes on this machine: share the cores.
        n = max(1, n // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1) or 1)))
    if torch.get_num_threads() != n:
        torch.set_num_threads(max(1, n))
