"""export: a checkpoint to ONNX, TorchScript or a bare state_dict, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import typer

from cnnlab.cli.app import app
from cnnlab.cli.options import MODEL_CODE_OPT, TRUST_CODE_OPT
from cnnlab.console import console
from cnnlab.errors import CnnlabError


@app.command()
def export(
    weights: Path = typer.Option(..., "--weights", "-w", metavar="CKPT|RUN",
                                 help="Checkpoint (best.pt / last.pt) or a run folder."),
    format: str = typer.Option("onnx", "--format", "-f", metavar="onnx|torchscript|state_dict",
                                help="state_dict: the bare network for "
                                "model.load_state_dict."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="FILE",
                                    help="File to write [default: next to the weights]."),
    opset: int = typer.Option(17, "--opset", min=9, help="ONNX opset version."),
    check: bool = typer.Option(True, "--check/--no-check",
                               help="Compare the export with PyTorch on sample inputs."),
    tolerance: float = typer.Option(1e-3, "--tolerance", min=0.0, metavar="DIFF",
                                    help="Fail when the max abs logit difference exceeds this."),
    model_code: str | None = MODEL_CODE_OPT,
    trust_code: bool = TRUST_CODE_OPT,
) -> None:
    """Export a trained model (normalization included, any batch size) and verify it."""
    from cnnlab.export import export_model

    res = export_model(weights, format, out, opset=opset, check=check, model=model_code,
                       trust_code=trust_code)
    if res.format == "state_dict":
        from cnnlab.export import state_dict_sidecar

        console.print(f"wrote the network's state_dict to {res.path} "
                      f"({res.path.stat().st_size / 1e6:.2f} MB; load it with "
                      "model.load_state_dict(torch.load(PATH))); normalization (mean, std) and "
                      f"classes to {state_dict_sidecar(res.path)}")
    else:
        console.print(f"wrote {res.format} model to {res.path} "
                      f"({res.path.stat().st_size / 1e6:.2f} MB; input float32 [N,C,H,W] in "
                      "[0,1])")
    if res.max_abs_diff is not None:
        console.print(f"max abs difference vs PyTorch on {res.samples} sample inputs: "
                      f"{res.max_abs_diff:.3g}")
        if res.max_abs_diff > tolerance:
            raise CnnlabError(f"{res.path}: export differs from the PyTorch model by "
                              f"{res.max_abs_diff:.3g} (> --tolerance {tolerance:g})")
