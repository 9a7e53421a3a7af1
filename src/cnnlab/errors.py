"""The one error type users see: a clear, single-line message."""

from __future__ import annotations

from collections.abc import Iterable


class CnnlabError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""

    exit_code = 2


class DataError(CnnlabError):
    """Unreadable, missing or inconsistent data."""


class CheckpointError(CnnlabError):
    """A checkpoint that is missing, corrupt, unsafe or of another model."""


class WrongModelError(CheckpointError):
    """A checkpoint or run of another model than the one the caller named."""


class TrainingError(CnnlabError):
    """Training cannot continue (NaN loss, out of memory, ...)."""


def name_list(names: Iterable[object], limit: int = 20) -> str:
    """Names joined by commas, all of them up to `limit`; beyond it the first `limit` and
    "... and N more" (a list in a message is never cut without saying so)."""
    items = [str(n) for n in names]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f" ... and {len(items) - limit} more"
