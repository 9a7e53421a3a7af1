"""Checkpoints: self-contained, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from pathlib import Path

import torch

from cnnlab.errors import CheckpointError
from cnnlab.io import TEMP_SUFFIX, atomic_write_bytes, write_error_reason  # noqa: F401

FORMAT_VERSION = 1


def save_checkpoint(path: Path, payload: dict, previous_exists: bool | None = None) -> None:
    """Serialise `payload` (tensors, dicts, lists, numbers, strings) and write it atomically."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    if previous_exists is None:
        previous_exists = Path(path).is_file()
    try:
        atomic_write_bytes(Path(path), buf.getvalue())
    except OSError as exc:
        kept = "the previous checkpoint is intact" if previous_exists else \
            "no checkpoint was written (there was none before)"
        raise CheckpointError(f"{path}: could not save checkpoint: {write_error_reason(exc)}; "
                              f"{kept}") from None


def load_checkpoint(path: str | Path) -> dict:
    """Load safely (no code runs) and check that it is a cnnlab checkpoint we can read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    # exports told apart before torch.load (which warns before it refuses TorchScript)
    export = "an ONNX export" if path.suffix.lower() == ".onnx" else \
        "a TorchScript export, which holds code cnnlab never runs" if _torchscript(path) else ""
    if export:
        raise CheckpointError(f"{path}: {export}; give the checkpoint it was exported from "
                              "(best.pt or its run folder)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "unsupported global" not in text.lower():
            # e.g. random bytes: "Unsupported operand"; nothing in it names code to run
            raise CheckpointError(f"{path}: not a checkpoint (not a file saved by PyTorch, or "
                                  "damaged)") from None
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{path}: refused to load: it holds objects other than weights"
                              f"{what}, which could run code; only load checkpoints you trust "
                              "and that cnnlab wrote") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError,
            AttributeError, IndexError, TypeError, MemoryError, OverflowError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") \
            from None
    if not isinstance(ckpt, dict) or "model_state" not in ckpt or "arch" not in ckpt:
        raise CheckpointError(f"{path}: not a cnnlab checkpoint")
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version} is newer than this cnnlab "
                              f"reads ({FORMAT_VERSION}); upgrade cnnlab")
    return ckpt


def _torchscript(path: Path) -> bool:
    """A TorchScript archive (`cnnlab export --format torchscript` writes one): it has code/."""
    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in name for name in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
