"""`cnnlab export --format state_dict`: the seed's model.load_state_dict(torch.load(PATH))."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli

from cnnlab.checkpoint import save_checkpoint
from cnnlab.export import export_model
from cnnlab.models.record import rebuild

# COMP 6721 A9 Q3's CNN as the seed writes it: a plain nn.Module, nothing from cnnlab.
SEED_CNN = textwrap.dedent("""
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super(CNN, self).__init__()
            self.conv_layer = nn.Sequential(
                nn.Conv2d(in_channels=3, out_channels=32, kernel_size=3, padding=1),
                nn.BatchNorm2d(32),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(in_channels=32, out_channels=32, kernel_size=3, padding=1),
                nn.BatchNorm2d(32),
                nn.LeakyReLU(inplace=True),
                nn.MaxPool2d(kernel_size=2, stride=2),
                nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3, padding=1),
                nn.BatchNorm2d(64),
                nn.LeakyReLU(inplace=True),
                nn.Conv2d(in_channels=64, out_channels=64, kernel_size=3, padding=1),
                nn.BatchNorm2d(64),
                nn.LeakyReLU(inplace=True),
                nn.MaxPool2d(kernel_size=2, stride=2))
            self.fc_layer = nn.Sequential(
                nn.Dropout(p=0.1),
                nn.Linear(8 * 8 * 64, 1000),
                nn.ReLU(inplace=True),
                nn.Linear(1000, 512),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.1),
                nn.Linear(512, 10))

        def forward(self, x):
            x = self.conv_layer(x)
            x = x.view(x.size(0), -1)
            return self.fc_layer(x)
""")


@pytest.fixture
def comp6721_ckpt(tmp_path: Path) -> Path:
    """A comp6721-cnn checkpoint with non-trivial normalization and BatchNorm statistics."""
    torch.manual_seed(0)
    arch = {"name": "comp6721-cnn", "args": {}, "num_classes": 10, "in_channels": 3,
            "image_size": 32}
    model = rebuild(arch)
    model.mean.copy_(torch.tensor([0.49, 0.48, 0.45]).view(1, 3, 1, 1))
    model.std.copy_(torch.tensor([0.25, 0.24, 0.26]).view(1, 3, 1, 1))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "best.pt"
    save_checkpoint(path, {"model_state": model.state_dict(), "arch": arch,
                           "classes": [f"c{i}" for i in range(10)], "config": {}})
    return path


@pytest.mark.slow
def test_state_dict_loads_strictly_into_the_seed_class(comp6721_ckpt: Path, tmp_path: Path):
    out = tmp_path / "cnn.pth"
    res = run_cli("export", "--weights", str(comp6721_ckpt), "--format", "state_dict",
                  "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "load_state_dict" in res.stderr + res.stdout
    state = torch.load(out)
    assert not any(k.startswith("net.") or k in ("mean", "std") for k in state)
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["mean"] == pytest.approx([0.49, 0.48, 0.45])
    assert side["std"] == pytest.approx([0.25, 0.24, 0.26])
    assert side["classes"][0] == "c0" and side["image_size"] == 32
    # a fresh process that knows nothing of cnnlab: the seed's class, strict loading
    script = SEED_CNN + textwrap.dedent(f"""
        import json, sys
        model = CNN()
        model.load_state_dict(torch.load({str(out)!r}), strict=True)
        model.eval()
        side = json.load(open({str(out.with_suffix('.json'))!r}))
        g = torch.Generator().manual_seed(3)
        x = torch.rand(4, 3, 32, 32, generator=g)
        mean = torch.tensor(side["mean"]).view(1, 3, 1, 1)
        std = torch.tensor(side["std"]).view(1, 3, 1, 1)
        with torch.no_grad():
            torch.save(model((x - mean) / std), sys.argv[1])
    """)
    logits_file = tmp_path / "logits.pt"
    done = subprocess.run([sys.executable, "-c", script, str(logits_file)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from cnnlab.evaluate.predictor import Predictor

    model = Predictor.load(comp6721_ckpt)
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model.module(x)
    np.testing.assert_allclose(torch.load(logits_file).numpy(), ref.numpy(), atol=1e-4)


def test_state_dict_export_checks_itself(comp6721_ckpt: Path):
    res = export_model(comp6721_ckpt, "state_dict")
    assert res.path.name == "best.state_dict.pt" and res.max_abs_diff < 1e-4
