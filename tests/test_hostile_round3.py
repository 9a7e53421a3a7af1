"""Hostile input, round 3 (issue 21): pages link only files and http(s) URLs (item 9); a custom
model with the wrong output, a corrupt search.json, an image size no memory holds, an array
given to cnnlab.train and an overflowing search bound are each one line, before any run."""

from __future__ import annotations

import json
import re
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import Zygote, assert_one_line_error
from torch import nn

import cnnlab
from cnnlab.errors import CnnlabError
from cnnlab.evaluate.notebook import run_html
from cnnlab.report.experiment_page import build_experiment_page

EVIL = "javascript:alert(1)"



@pytest.fixture(scope="module")
def runs(zygote: Zygote, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding two copies of one tiny finished run: `normal` and `javascript:...`."""
    root = tmp_path_factory.mktemp("links")
    res = zygote.run("train", "--model", "mlp", "--model-arg", "hidden=8", "--epochs", "1",
                     "--image-size", "8", "--no-report", "--out", root / "normal", cwd=root)
    assert res.returncode == 0, res.stderr
    (root / "normal" / "report.html").write_text("<p>report</p>")  # the page links it
    shutil.copytree(root / "normal", root / EVIL)
    return root


def hrefs(page: str) -> list[str]:
    return re.findall(r'href="([^"]*)"', page)


# ---- item 9: links ------------------------------------------------------------------------
def test_safe_href_keeps_paths_and_web_urls_and_drops_other_schemes():
    from cnnlab.io import safe_href

    for bad in [EVIL, "JavaScript:alert(1)", "data:text/html,<script>x</script>", "file:///etc",
                "vbscript:msgbox(1)", "http:no-host"]:
        assert safe_href(bad) is None, bad
    assert safe_href("https://example.org/a?b=1") == "https://example.org/a?b=1"
    assert safe_href(Path(EVIL)) == "javascript%3Aalert(1)"  # a folder of that name, relative
    assert safe_href(Path("members/lr=0.1/report.html")) == "members/lr=0.1/report.html"
    assert safe_href(Path("a b#c?d")) == "a%20b%23c%3Fd"  # '#' and '?' stay part of the name
    assert safe_href(Path("//evil.example/x")) == "/evil.example/x"  # no other host


def test_compare_page_never_links_a_javascript_url(zygote: Zygote, runs: Path):
    # --out . puts the page beside the runs: the folder's relative path starts with the scheme
    res = zygote.run("compare", runs / "normal", runs / EVIL, "--out", runs, cwd=runs)
    assert res.returncode == 0, res.stderr
    links = hrefs((runs / "experiment.html").read_text())
    assert not [h for h in links if h.lower().startswith(("javascript:", "data:", "file:"))]
    assert "normal/report.html" in links and "normal/" in links
    # the odd folder still gets its (now harmless) relative links, and they lead to it
    assert "javascript%3Aalert(1)/report.html" in links
    from urllib.parse import unquote

    assert (runs / unquote("javascript%3Aalert(1)/report.html")).is_file()


def test_experiment_page_and_notebook_card_of_a_javascript_folder(runs: Path,
                                                                 monkeypatch: pytest.MonkeyPatch):
    page = build_experiment_page(runs, "t", [{"run": "a"}, {"run": "b"}],
                                 [runs / EVIL, runs / "normal"], curves=None).read_text()
    assert 'href="javascript:' not in page and 'href="normal/report.html"' in page
    monkeypatch.chdir(runs)  # a relative run folder, as cnnlab.train(out=...) gives it
    card = run_html(Path(EVIL), {}, "run", [])
    assert hrefs(card) == ["javascript%3Aalert(1)/report.html"]


# ---- custom models with the wrong output ------------------------------------------------
BAD_MODELS = '''
from torch import nn


def seven(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, 7))


def maps(num_classes, in_channels, image_size):
    return nn.Conv2d(in_channels, num_classes, 3, padding=1)


def broken(num_classes, in_channels, image_size):
    return nn.Sequential(nn.Flatten(), nn.Linear(5, num_classes))
'''


@pytest.mark.parametrize("builder, needles", [
    ("seven", ["returns shape (1, 7) for 10 classes", "must output 10 values per image"]),
    ("maps", ["returns shape (1, 10, 8, 8) for 10 classes"]),
    ("broken", ["fails on one 1x8x8 image", "RuntimeError"]),
])
def test_custom_model_with_wrong_output_is_refused_before_training(
        zygote: Zygote, tmp_path: Path, builder: str, needles: list[str]):
    # The zygote's sys.path holds '' (its working folder): the module in cwd is importable.
    (tmp_path / "badmods.py").write_text(textwrap.dedent(BAD_MODELS))
    res = zygote.run("train", "--model", f"badmods:{builder}", "--epochs", "1", "--image-size",
                     "8", "--out", tmp_path / "run", cwd=tmp_path)
    assert_one_line_error(res, f"model 'badmods:{builder}'", *needles, after_progress=True)
    assert "epoch" not in res.stdout.lower() and not (tmp_path / "run").exists()


def test_check_output_runs_one_image_in_eval_mode_and_restores_the_mode():
    from cnnlab.models.classifier import check_output

    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 3), nn.BatchNorm1d(3))  # BN: batch of 1
    net.train()
    check_output(net, "m", 3, 3, 2)
    assert net.training
    with pytest.raises(CnnlabError, match="returns a tuple, not a tensor"):
        check_output(_Pair(), "m", 3, 3, 2)


class _Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple:
        return x, x


# ---- search show on a corrupt search.json ------------------------------------------------
GOOD = {"kind": "search", "storage": "sqlite:///study.db", "study": "s",
        "space": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "log": True}},
        "metric": "val_acc", "direction": "maximize", "pruner": "median", "prune_after": 2,
        "trials": 2, "seconds": 1.0}


@pytest.mark.parametrize("content, needles", [
    (json.dumps(GOOD)[:40].encode(), ["not a readable search.json", "unterminated"]),
    (b"\x89PNG\r\n\x1a\n\x00\xff", ["not a readable search.json", "utf-8"]),
    (b"[1, 2]", ["not a search.json (a list"]),
    (b"[" * 100_000, ["nested too deeply"]),
    (json.dumps({**GOOD, "direction": 7}).encode(), ['direction = 7 is not minimize or maximize']),
    (json.dumps({**GOOD, "trials": "many"}).encode(), ['trials = "many"']),
    (json.dumps({**GOOD, "metric": "val_fun"}).encode(), ['metric = "val_fun"']),
    (json.dumps({k: v for k, v in GOOD.items() if k != "study"}).encode(),
     ["'study' is missing"]),
    (json.dumps({**GOOD, "space": {"lr": {"type": "float", "low": "a", "high": 1}}}).encode(),
     ["space = ", "lr: low and high must be finite numbers"]),
    (json.dumps({**GOOD, "space": []}).encode(), ["space = []"]),
])
def test_search_show_on_a_corrupt_search_json_is_one_line(zygote: Zygote, tmp_path: Path,
                                                         content: bytes, needles: list[str]):
    folder = tmp_path / "search"
    folder.mkdir()
    (folder / "search.json").write_bytes(content)
    res = zygote.run("search", "show", folder, cwd=tmp_path)
    assert_one_line_error(res, str(folder / "search.json"), *needles)
    assert sorted(p.name for p in folder.iterdir()) == ["search.json"]  # nothing written


# ---- an image size no memory holds -------------------------------------------------------
def test_huge_image_size_on_digits_is_refused_before_allocating(zygote: Zygote, tmp_path: Path):
    res = zygote.run("train", "--image-size", "100000", "--epochs", "1", "--out",
                     tmp_path / "run", cwd=tmp_path)
    assert_one_line_error(res, "digits", "1x100000x100000", "16.3 TB", "--image-size")
    assert not (tmp_path / "run").exists()


# ---- cnnlab.train(array) -----------------------------------------------------------------
@pytest.mark.parametrize("data", [np.zeros((3, 8, 8)), torch.zeros(3, 8, 8),
                                  (np.zeros((3, 8, 8)), np.zeros(3))])
def test_train_on_an_array_says_what_data_may_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 data: object):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"data must be a path .*ImageClassifier\(\)\.fit") as e:
        cnnlab.train(data, epochs=1)
    assert isinstance(e.value, CnnlabError) and "\n" not in str(e.value)
    assert type(data).__name__ in str(e.value)
    assert list(tmp_path.iterdir()) == []  # no run folder, no "runs/" named after the array


# ---- search bounds that overflow ---------------------------------------------------------
@pytest.mark.parametrize("spec, needle", [
    ("4:1e400", "not inf"), ("-1e400:4", "not -inf"), ("nan:4", "not nan"),
    ("4,1e999", "not inf"), ("1e999", "not inf"),
    ("4:100000000000000000000000000", "1e+26 is too large"),
])
def test_search_refuses_non_finite_bounds_at_parse_time(zygote: Zygote, tmp_path: Path,
                                                        spec: str, needle: str):
    res = zygote.run("search", "--param", f"model_args.width={spec}", "--model", "cnn",
                     "--trials", "1", "--epochs", "1", "--image-size", "8", "--out",
                     tmp_path / "s", cwd=tmp_path)
    assert_one_line_error(res, "model_args.width", spec, needle)
    assert not (tmp_path / "s").exists()  # refused before any folder or trial
