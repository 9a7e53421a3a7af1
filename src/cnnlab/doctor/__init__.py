"""`cnnlab doctor`: data health checks before training (leaks, duplicates, labels, shift)."""

from __future__ import annotations

from cnnlab.doctor.run import CHECKS, run_doctor, summary_line

__all__ = ["CHECKS", "run_doctor", "summary_line"]
