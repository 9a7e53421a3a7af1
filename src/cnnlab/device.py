"""Device and precision choices, shared by training and inference."""

from __future__ import annotations

import contextlib
import os

import torch

from cnnlab.errors import CnnlabError

PRECISIONS = ("32", "bf16", "16-mixed")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an unavailable explicit choice is an error."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CnnlabError("--device cuda: no CUDA GPU is available here (use --device cpu)")
    if name == "cuda":
        # Under torchrun each process drives the GPU of its local rank.
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if name == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise CnnlabError("--device mps: Apple MPS is not available here (use --device cpu)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise CnnlabError(f"unknown device {name!r}; choose auto, cpu, cuda or mps") from None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for `precision` ('32' means none)."""
    if precision not in PRECISIONS:
        raise CnnlabError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
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


def use_channels_last(setting: bool | None, device: torch.device, model: torch.nn.Module) -> bool:
    """The setting when given; by default only for conv nets on CUDA, where it speeds up cuDNN."""
    if setting is not None:
        return bool(setting)
    has_conv = any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    return device.type == "cuda" and has_conv


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
