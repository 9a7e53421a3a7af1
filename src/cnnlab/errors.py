"""The one error type users see: a clear, single-line message."""

from __future__ import annotations


class CnnlabError(Exception):
    """A problem with the user's input or environment, reported as one line (exit code 2)."""

    exit_code = 2


class DataError(CnnlabError):
    """Unreadable, missing or inconsistent data."""


class CheckpointError(CnnlabError):
    """A checkpoint that is missing, corrupt, unsafe or of another model."""


class TrainingError(CnnlabError):
    """Training cannot continue (NaN loss, out of memory, ...)."""
