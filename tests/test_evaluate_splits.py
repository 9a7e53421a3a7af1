"""`evaluate --split all` gives one row per split; `--split train,val,test` picks them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cnnlab


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ev") / "run"
    cnnlab.train(None, model="cnn", epochs=1, out=str(out), verbose=False, report=False,
                 extra={"plots": False})
    return out


@pytest.mark.slow
def test_split_all_is_one_row_per_split(run_dir: Path, cli):
    code, out, err = cli("evaluate", "--weights", str(run_dir / "best.pt"), "--split",
                          "all", "--json")
    assert code == 0, err
    m = json.loads(out)
    assert list(m) == ["train", "val", "test"]
    assert sum(v["n"] for v in m.values()) == 1797  # the training run's own three splits
    test_only = json.loads(cli("evaluate", "--weights", str(run_dir / "best.pt"),
                                "--json")[1])
    assert test_only["test"]["accuracy"] == m["test"]["accuracy"]
    code, out, err = cli("evaluate", "--weights", str(run_dir / "best.pt"), "--split",
                          "all")
    table = [line.split("│")[1].strip() for line in (out + err).splitlines()
             if line.count("│") > 3]  # the console table (stderr)
    assert code == 0 and table[:3] == ["train", "val", "test"]


def test_split_list(run_dir: Path, cli):
    code, out, err = cli("evaluate", "--weights", str(run_dir / "best.pt"), "--split",
                          "train,test", "--json")
    assert code == 0, err
    assert list(json.loads(out)) == ["train", "test"]
    code, out, err = cli("evaluate", "--weights", str(run_dir / "best.pt"), "--split",
                          "train,tst")
    assert code == 2 and "'tst' is not train, val or test" in err
    # one unknown name: one line too, in every command taking --split (it ended in
    # "unexpected ValueError")
    for cmd in (("evaluate",), ("predict", "--out", str(run_dir / "p.csv")),
                ("explain", "failures")):
        code, out, err = cli(*cmd, "--weights", str(run_dir / "best.pt"), "--split", "tst")
        assert code == 2 and err.strip() == "error: --split 'tst': choose train, val, test or all"
    assert not (run_dir / "p.csv").exists()


def test_split_all_skips_an_unlabeled_split(run_dir: Path, digits_npy: Path,
                                            cli):
    code, out, err = cli("evaluate", "--weights", str(run_dir / "best.pt"),
                          str(digits_npy), "--split", "all", "--json")
    assert code == 0, err
    m = json.loads(out)
    assert list(m) == ["train", "val"] and m["train"]["n"] == 1000 and m["val"]["n"] == 400
