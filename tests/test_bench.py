"""Smoke test of the benchmark harness (bench/run.py): a tiny case (a) end to end, no timings
asserted — only that every variant ran and the results file holds its table and targets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only

ROOT = Path(__file__).resolve().parent.parent


def test_bench_quick_smoke(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    env = {**os.environ, "CNNLAB_BENCH_WORK": str(tmp_path / "work"),
           "CNNLAB_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--cases", "a",
         "--images", "96", "--epochs", "1", "--no-peers", "--no-fp32-cnnlab", "--threads", "1",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "## (a) USI myNet" in text
    for name in ("model-only fp32 (naive)", "cnnlab (defaults)", "textbook (PIL Dataset"):
        assert f"| {name}" in text
    assert "≥ 2× faster than the textbook loop" in text
    res = json.loads(out.with_suffix(".json").read_text())
    variants = res["cases"][0]["variants"]
    assert res["cases"][0]["n_train"] == 96
    for name, r in variants.items():
        assert r["error"] is None, (name, r["error"])
        assert len(r["epochs"]) == 1 and r["epochs"][0] > 0
        assert 0.0 <= r["final_acc"] <= 1.0
    assert res["machine"]["peak"]["fp32"] > 0
