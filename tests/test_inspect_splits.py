"""`inspect data`: an unlabeled split is "unlabeled N", and every split has sample images."""

from __future__ import annotations

import json
from pathlib import Path


def test_unlabeled_test_split_and_samples_of_every_split(digits_npy: Path, tmp_path: Path,
                                                         cli):
    code, out, err = cli("inspect", "data", str(digits_npy))
    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "unlabeled 397" in rows["all"]  # digits 1400..1796 without labels, not 0
    cells = [c.strip() for c in rows["0"].split("│")[2:-1]]
    assert cells[-2] == "-"  # the test column of a class row: no false 0
    outdir = tmp_path / "inspect"
    code, out, err = cli("inspect", "data", str(digits_npy), "--json", "--out",
                          str(outdir))
    assert code == 0, err
    s = json.loads(out)
    assert s["unlabeled_by_split"]["test"] == 397 and s["sizes"]["test"] == 397
    shown = json.loads((outdir / "summary.json").read_text())["samples_shown"]
    assert set(shown) == {"train", "val", "test"}
    assert shown["train"] == [str(k) for k in range(10)]
    assert shown["test"] == ["unlabeled"] * 10
