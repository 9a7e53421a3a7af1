"""Which engine computes frozen EfficientNet-Lite0 features fastest on this machine, correctly.

    python bench/feature_engines.py DATA [--n 256] [--rounds 2] [--engines a,b,...]

Every engine runs on the same N decoded photos of DATA (224 px, the decode cache), in rounds,
interleaved (engine 1, 2, ..., then again), so load from other work on the machine touches all
alike; the best round of each counts. Agreement is checked against the float32 NCHW features:
cosine similarity of the 1280-d pooled features and ImageNet top-1 agreement (the shipped
1000-class head on those features: a far stricter test than a 2-class head).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import torch

from cnnlab.data.stats import IMAGENET_MEAN, IMAGENET_STD

Engine = Callable[[torch.Tensor], torch.Tensor]  # uint8 [B,3,H,W] -> float32 [B,1280]


def backbone(side: int) -> torch.nn.Module:
    from cnnlab.models.efficientnet import efficientnet_lite0

    return efficientnet_lite0(1000, 3, side, pretrained=True).eval()


class Pooled(torch.nn.Module):
    """Normalize 0..255 input, run the backbone, average-pool: [B,3,H,W] -> [B,1280]."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features((x - self.mean) / self.std).mean((2, 3))


def torch_engine(side: int, bf16: bool, channels_last: bool, batch: int,
                 fold: bool = False) -> Engine:
    model = Pooled(backbone(side)).eval()
    if fold:  # BatchNorm folded into the convolutions, as train's feature pass does
        from cnnlab.models.inference import fold_batchnorm

        model, n = fold_batchnorm(model, torch.rand(1, 3, side, side) * 255)
        assert n > 0
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format

    @torch.inference_mode()
    def run(images: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, images.shape[0], batch):
            x = images[s:s + batch].float().contiguous(memory_format=fmt)
            ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
            with ctx:
                out.append(model(x).float())
        return torch.cat(out)
    return run


def onnx_file(side: int, tmp: str) -> str:
    """The pooled backbone exported to ONNX in `tmp` (once; both exported engines read it)."""
    path = os.path.join(tmp, f"lite0-{side}.onnx")
    if not os.path.isfile(path):
        torch.onnx.export(Pooled(backbone(side)).eval(), (torch.zeros(1, 3, side, side),), path,
                          input_names=["x"], output_names=["f"],
                          dynamic_axes={"x": {0: "n"}, "f": {0: "n"}}, opset_version=17,
                          dynamo=False)
    return path


def ort_engine(side: int, batch: int, tmp: str) -> Engine:
    import onnxruntime as ort

    path = onnx_file(side, tmp)
    so = ort.SessionOptions()
    so.intra_op_num_threads = torch.get_num_threads()
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        out = [torch.from_numpy(sess.run(None, {"x": images[s:s + batch].float().numpy()})[0])
               for s in range(0, images.shape[0], batch)]
        return torch.cat(out)
    return run


def openvino_engine(side: int, batch: int, tmp: str, precision: str) -> Engine:
    """OpenVINO on the CPU at `precision` (f32|bf16), `batch` images per call (0: any)."""
    import openvino as ov

    path = onnx_file(side, tmp)
    core = ov.Core()
    net = core.read_model(path)
    if batch:
        net.reshape({"x": [batch, 3, side, side]})
    compiled = core.compile_model(net, "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY"})
    req = compiled.create_infer_request()

    def run(images: torch.Tensor) -> torch.Tensor:
        out = []
        step = batch or 64
        for s in range(0, images.shape[0], step):
            x = images[s:s + step].float().numpy()
            n = x.shape[0]
            if batch and n < batch:
                x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), np.float32)])
            out.append(torch.from_numpy(req.infer({"x": x})[0][:n].copy()))
        return torch.cat(out)
    return run


ENGINES: dict[str, Callable[[int, str], Engine]] = {
    "ov-fp32-b64": lambda s, t: openvino_engine(s, 64, t, "f32"),
    "ov-bf16-b64": lambda s, t: openvino_engine(s, 64, t, "bf16"),
    "ov-bf16-b16": lambda s, t: openvino_engine(s, 16, t, "bf16"),
    "ov-fp32-dyn": lambda s, t: openvino_engine(s, 0, t, "f32"),
    "ov-fp32-b16": lambda s, t: openvino_engine(s, 16, t, "f32"),
    "ov-fp32-b8": lambda s, t: openvino_engine(s, 8, t, "f32"),
    "fp32-nchw-b256": lambda s, t: torch_engine(s, False, False, 256),
    "fp32-cl-b64": lambda s, t: torch_engine(s, False, True, 64),
    "bf16-cl-b32": lambda s, t: torch_engine(s, True, True, 32),
    "bf16-cl-b64": lambda s, t: torch_engine(s, True, True, 64),
    "bf16-cl-b256": lambda s, t: torch_engine(s, True, True, 256),
    "bf16-nchw-b64": lambda s, t: torch_engine(s, True, False, 64),
    "ort-fp32-b64": lambda s, t: ort_engine(s, 64, t),
    "fp32-cl-b64-fold": lambda s, t: torch_engine(s, False, True, 64, True),
    "bf16-cl-b64-fold": lambda s, t: torch_engine(s, True, True, 64, True),
    "bf16-cl-b256-fold": lambda s, t: torch_engine(s, True, True, 256, True),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--tmp", default="/tmp")
    a = ap.parse_args(argv)
    from cnnlab.data.load import LoadOptions, load_data

    splits = load_data(a.data, LoadOptions(image_size=224))
    images = torch.cat([d.images for _, d in splits.items() if len(d)])[:a.n].clone()
    side = int(images.shape[-1])
    names = [e for e in a.engines.split(",") if e]
    engines = {n: ENGINES[n](side, a.tmp) for n in names}
    ref_net = backbone(side)
    best: dict[str, float] = {}
    feats: dict[str, torch.Tensor] = {}
    for r in range(a.rounds):
        for n, run in engines.items():
            run(images[:8])  # warm-up (oneDNN primitive creation)
            t = time.perf_counter()
            feats[n] = run(images)
            dt = time.perf_counter() - t
            best[n] = min(best.get(n, dt), dt)
            print(f"round {r + 1} {n}: {images.shape[0] / dt:.1f} img/s", file=sys.stderr)
    ref = feats.get("fp32-nchw-b256")
    load = os.getloadavg()[0]
    print(f"\n{images.shape[0]} photos at {side} px, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load:.2f}\n")
    print("| engine | img/s | x fp32 | cosine vs fp32 (min) | ImageNet top-1 agrees |")
    print("|---|---:|---:|---:|---:|")
    base = images.shape[0] / best[names[0]]
    with torch.inference_mode():
        top_ref = ref_net._fc(ref).argmax(1) if ref is not None else None
        for n in names:
            f = feats[n]
            cos = torch.nn.functional.cosine_similarity(f, ref).min().item() if ref is not None \
                else float("nan")
            agree = (ref_net._fc(f).argmax(1) == top_ref).float().mean().item() \
                if top_ref is not None else float("nan")
            ips = images.shape[0] / best[n]
            print(f"| {n} | {ips:.1f} | {ips / base:.2f} | {cos:.4f} | {100 * agree:.1f}% |")


if __name__ == "__main__":
    main()
