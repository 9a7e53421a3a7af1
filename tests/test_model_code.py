"""A file never chooses what code runs (issue: round-3 security).

A checkpoint's architecture record and a run's config.yaml are plain strings, so
`weights_only=True` lets them through; they name the model. Every loader (predict, evaluate,
export, report, explain, doctor --weights, cnnlab.load, --resume) must refuse a custom
`module:function` the user did not name, before importing anything, and must check every
saved value again. CLI cases are real `cnnlab` processes (clitools.Zygote).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from clitools import assert_one_line_error
from conftest import write_image_folder

import cnnlab
from cnnlab.errors import CnnlabError

BUILDER = '''
from torch import nn


def build(num_classes, in_channels, image_size, hidden=16):
    """A tiny custom MLP."""
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size ** 2, hidden),
                         nn.ReLU(), nn.Linear(hidden, num_classes))
'''



@pytest.fixture(scope="module")
def run(zygote, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny built-in-model run on real PNGs (its best.pt is the base of each forgery)."""
    root = tmp_path_factory.mktemp("code")
    data = write_image_folder(root / "imgs", n_per_class=8, size=16)
    res = zygote.run("train", data, "--model-arg", "width=4", "--image-size", "16", "--epochs",
                     "1", "--no-report", "--out", root / "run")
    assert res.returncode == 0, res.stderr
    return {"root": root, "data": data, "run": root / "run"}


def forge(run_dir: Path, dest: Path, name: str, args: dict) -> Path:
    """A copy of the run whose checkpoints and config.yaml name `name` with `args`."""
    shutil.copytree(run_dir, dest)
    for ckpt in dest.glob("*.pt"):
        payload = torch.load(ckpt, weights_only=True)
        payload["arch"] = {**payload["arch"], "name": name, "args": args}
        payload.setdefault("config", {})["model"] = name
        torch.save(payload, ckpt)
    cfg = yaml.safe_load((dest / "config.yaml").read_text())
    cfg.update(model=name, model_args=args)
    (dest / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dest


def hostile_records(tmp: Path) -> list[tuple[str, dict, Path]]:
    """(model name, args, file that appears if the named code ran) for each known attack."""
    hub = tmp / "hubrepo"
    hub.mkdir()
    hub_marker = tmp / "hub-ran"
    (hub / "hubconf.py").write_text(f"open({str(hub_marker)!r}, 'w').close()\n"
                                    "def x(**kw):\n    raise SystemExit\n")
    log_file = tmp / "truncated.log"
    beside_marker = tmp / "beside-ran"
    return [
        ("torch.hub:load", {"repo_or_dir": str(hub), "model": "x", "source": "local"},
         hub_marker),
        ("logging:basicConfig", {"filename": str(log_file), "filemode": "w", "force": True},
         log_file),
        ("evilmod:build", {}, beside_marker),  # a module shipped beside the checkpoint
    ]


def loader_commands(folder: Path, data: Path, tmp: Path) -> dict[str, list]:
    """Every command that opens a checkpoint or run folder someone else may have made."""
    return {
        "predict": ["predict", "--weights", folder, data, "--out", tmp / "p.csv"],
        "evaluate": ["evaluate", "--weights", folder / "best.pt", data],
        "export": ["export", "--weights", folder, "--format", "state_dict", "--out",
                   tmp / "sd.pt"],
        "report": ["report", folder],
        "gradcam": ["explain", "gradcam", "--weights", folder, data, "--out", tmp / "g.png"],
        "doctor": ["doctor", data, "--weights", folder, "--out", tmp / "doc", "--skip",
                   "labels"],
        "resume": ["train", "--resume", "--out", folder, "--epochs", "2"],
    }


def test_no_file_chooses_code_to_run(zygote, run, tmp_path: Path) -> None:
    for i, (name, args, marker) in enumerate(hostile_records(tmp_path)):
        folder = forge(run["run"], tmp_path / f"forged{i}", name, args)
        (folder / "evilmod.py").write_text(
            f"open({str(tmp_path / 'beside-ran')!r}, 'w').close()\n"
            "def build(**kw):\n    raise SystemExit\n")
        for what, argv in loader_commands(folder, run["data"], tmp_path).items():
            res = zygote.run(*argv, cwd=folder)  # cwd: the module beside it is importable
            if what == "report":  # the page is still written, without the model's sections
                assert res.returncode == 0, res.stderr
                page = (folder / "report.html").read_text()
                assert "--trust-model-code" in page and name in page
            else:
                assert_one_line_error(res, repr(name), "--trust-model-code")
            assert not marker.exists(), (what, name)
        # in Python, where `python -m` and notebooks put the working folder on sys.path
        code = (f"import cnnlab, sys\ntry:\n    cnnlab.load({str(folder)!r})\n"
                "except cnnlab.CnnlabError as e:\n    print('refused:', e)\n"
                "print('evilmod' in sys.modules, 'this' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                             text=True, timeout=120)
        assert "refused:" in out.stdout and out.stdout.strip().endswith("False False"), \
            (out.stdout, out.stderr)
        assert not marker.exists(), name


def test_an_import_only_name_runs_nothing(run, tmp_path: Path) -> None:
    folder = forge(run["run"], tmp_path / "this", "this:s", {})
    code = (f"import cnnlab, sys\ntry:\n    cnnlab.load({str(folder)!r})\n"
            "except cnnlab.CnnlabError as e:\n    print('refused:', e)\n"
            "print('this' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "refused:" in out.stdout and out.stdout.strip().endswith("False"), out.stderr
    assert "Zen of Python" not in out.stdout


def test_a_named_or_trusted_custom_model_loads_with_only_its_own_arguments(
        zygote, run, tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "tiny.py").write_text(textwrap.dedent(BUILDER))
    folder = tmp_path / "custom"  # the zygote's children import from their working folder
    res = zygote.run("train", run["data"], "--model", "tiny:build", "--model-arg", "hidden=8",
                     "--image-size", "16", "--epochs", "1", "--no-report", "--out", folder,
                     cwd=pkg)
    assert res.returncode == 0, res.stderr
    with pytest.raises(CnnlabError, match="--trust-model-code"):
        cnnlab.load(folder)  # not named: refused, even where the module is importable
    sys.path.insert(0, str(pkg))
    try:
        assert cnnlab.load(folder, model="tiny:build").module.net[1].out_features == 8
        assert cnnlab.load(folder, trust_code=True).module.net[1].out_features == 8
        with pytest.raises(CnnlabError, match="holds a 'tiny:build' model, not 'cnn'"):
            cnnlab.load(folder, model="cnn")
        # the user named the builder; the file still cannot pass it arguments it does not take
        forged = forge(folder, tmp_path / "forged", "tiny:build", {"hidden": 8, "evil": 1})
        with pytest.raises(CnnlabError, match="takes no argument 'evil'"):
            cnnlab.load(forged, model="tiny:build")
        forged = forge(folder, tmp_path / "forged2", "tiny:build", {"hidden": {"a": 1}})
        with pytest.raises(CnnlabError, match="not a plain"):
            cnnlab.load(forged, model="tiny:build")
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("tiny", None)
    # resume names it again (or trusts it) and continues
    res = zygote.run("train", "--resume", "--out", folder, "--epochs", "2", cwd=pkg)
    assert_one_line_error(res, "'tiny:build'", "--model tiny:build")
    res = zygote.run("train", "--resume", "--out", folder, "--epochs", "2", "--model",
                     "tiny:build", cwd=pkg)
    assert res.returncode == 0, res.stderr


def test_registered_models_cannot_be_given_a_weights_path_or_download(run, tmp_path) -> None:
    folder = forge(run["run"], tmp_path / "w", "cnn", {"width": 4, "pretrained": True})
    with pytest.raises(CnnlabError, match="takes no argument 'pretrained'"):
        cnnlab.load(folder)


@pytest.mark.parametrize("key,value,needle", [
    ("batch_size", 0, "batch_size: '0'"),
    ("lr", "abc", "lr: 'abc'"),
    ("optimizer", "evil", "optimizer: 'evil'"),
    ("model_args", "x", "model_args: 'x'"),
])
def test_a_tampered_config_yaml_names_file_key_and_value(zygote, run, tmp_path, key, value,
                                                         needle) -> None:
    folder = tmp_path / "r"
    shutil.copytree(run["run"], folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    cfg[key] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = zygote.run("train", "--resume", "--out", folder, "--epochs", "2")
    assert_one_line_error(res, "config.yaml", needle)
    res = zygote.run("report", folder)
    assert_one_line_error(res, "config.yaml", needle)


def test_a_binary_config_yaml_is_one_line(zygote, run, tmp_path) -> None:
    folder = tmp_path / "r"
    shutil.copytree(run["run"], folder)
    (folder / "config.yaml").write_bytes(b"\x00\xff\xfe binary \x80\x81")
    res = zygote.run("train", "--resume", "--out", folder, "--epochs", "2")
    assert_one_line_error(res, "config.yaml")
    (folder / "config.yaml").write_text("- a list\n- not settings\n")
    res = zygote.run("train", "--resume", "--out", folder, "--epochs", "2")
    assert_one_line_error(res, "config.yaml", "KEY: VALUE")


@pytest.mark.parametrize("change,needle", [
    (lambda c: c["arch"].update(num_classes="x"), "num_classes='x'"),
    (lambda c: c["arch"].update(image_size=10 ** 9), "image_size=1000000000"),
    (lambda c: c.update(classes=["a"]), "names 1 classes"),
    (lambda c: c.update(temperature=-1.0), "temperature -1.0"),
    (lambda c: c["config"].update(lr="abc"), "lr: 'abc'"),
    (lambda c: c.update(arch=["not", "a", "record"]), "not a mapping"),
])
def test_tampered_checkpoint_metadata_names_file_key_and_value(zygote, run, tmp_path, change,
                                                               needle) -> None:
    ckpt = torch.load(run["run"] / "best.pt", weights_only=True)
    change(ckpt)
    bad = tmp_path / "bad.pt"
    torch.save(ckpt, bad)
    with pytest.raises(CnnlabError, match="bad.pt") as err:
        cnnlab.load(bad)
    assert needle in str(err.value) and "\n" not in str(err.value)
    res = zygote.run("predict", "--weights", bad, run["data"], "--out", tmp_path / "p.csv")
    assert_one_line_error(res, "bad.pt", needle)
