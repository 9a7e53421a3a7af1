"""Checkpoints: self-contained, written atomically, loaded with weights_only=True."""

from __future__ import annotations

import errno
import io
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path

import torch

from cnnlab.errors import CheckpointError

FORMAT_VERSION = 1


TEMP_SUFFIX = ".tmp"


def write_error_reason(exc: OSError) -> str:
    """A short, plain reason for a failed write (disk full, file size limit, quota, ...)."""
    reasons = {errno.ENOSPC: "No space left on device (the disk is full)",
               errno.EFBIG: "File too large (the file size limit is reached)",
               errno.EDQUOT: "Disk quota exceeded",
               errno.EROFS: "Read-only file system",
               errno.EACCES: "Permission denied", errno.EPERM: "Permission denied"}
    return reasons.get(exc.errno or 0, exc.strerror or str(exc) or type(exc).__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`.

    A failed write (e.g. a full disk) removes the temp file and leaves `path` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not our temp file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None:
            # a full disk while writing, a read-only target: name the target, not the temp file
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def save_checkpoint(path: Path, payload: dict) -> None:
    """Serialise `payload` (tensors, dicts, lists, numbers, strings) and write it atomically."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    existed = Path(path).is_file()
    try:
        atomic_write_bytes(Path(path), buf.getvalue())
    except OSError as exc:
        kept = "the previous checkpoint is intact" if existed else \
            "no checkpoint was written (there was none before)"
        raise CheckpointError(f"{path}: could not save checkpoint: {write_error_reason(exc)}; "
                              f"{kept}") from None


def load_checkpoint(path: str | Path) -> dict:
    """Load safely (no code runs) and check that it is a cnnlab checkpoint we can read."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
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
