"""`cnnlab doctor` benchmarks: our pHash against imagehash, and end-to-end times.

    python bench/doctor.py hash [--n 2000]          # our batched pHash vs imagehash.phash
    python bench/doctor.py digits [--n 10000]       # N 28x28 PNGs (digits, jittered), pixels
    python bench/doctor.py jpg [--n 4000]           # N 224x224 JPGs, --features backbone
    python bench/doctor.py npy --data DIR           # an existing source (e.g. mnist10k)

The end-to-end cases run the real `cnnlab doctor` command in a subprocess with an empty decode
cache, so reading the files is part of the time. Data is generated under --work (kept, so a
rerun does not regenerate it). Compare timings only from a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def jittered_digits(n: int, side: int = 28, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n distinct side x side digits: sklearn's 1,797 scaled up with random shift/scale/noise."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(d.images), n)
    x = torch.from_numpy(d.images[pick] / 16.0).float()[:, None]
    theta = torch.zeros(n, 2, 3)
    scale = torch.from_numpy(rng.uniform(0.85, 1.25, n)).float()
    angle = torch.from_numpy(rng.uniform(-0.25, 0.25, n)).float()
    theta[:, 0, 0] = scale * torch.cos(angle)
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle)
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, :, 2] = torch.from_numpy(rng.uniform(-0.15, 0.15, (n, 2))).float()
    grid = F.affine_grid(theta, (n, 1, side, side), align_corners=False)
    img = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")[:, 0].numpy()
    img = img * 255 + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), d.target[pick]


def write_pngs(folder: Path, n: int) -> Path:
    """folder/<digit>/*.png, once."""
    from PIL import Image

    if (folder / ".done").is_file():
        return folder
    x, y = jittered_digits(n)
    for i, (img, lab) in enumerate(zip(x, y, strict=True)):
        (folder / str(lab)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / str(lab) / f"{i:05d}.png")
    (folder / ".done").write_text(str(n))
    return folder


def write_jpgs(folder: Path, n: int, side: int = 224, seed: int = 0) -> Path:
    """folder/<class>/*.jpg photos-like pictures: 4 classes of coloured shapes on textures."""
    from PIL import Image, ImageDraw, ImageFilter

    if (folder / ".done").is_file():
        return folder
    rng = np.random.default_rng(seed)
    shapes = ("ellipse", "rectangle", "triangle", "lines")
    for i in range(n):
        k = i % len(shapes)
        base = rng.integers(0, 255, (side // 8, side // 8, 3)).astype(np.uint8)
        img = Image.fromarray(base).resize((side, side), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.integers(0, side // 2, 2)
            w, h = rng.integers(side // 5, side // 2, 2)
            x1, y1 = x0 + w, y0 + h
            col = tuple(int(c) for c in rng.integers(0, 255, 3))
            if shapes[k] == "ellipse":
                draw.ellipse((x0, y0, x1, y1), fill=col)
            elif shapes[k] == "rectangle":
                draw.rectangle((x0, y0, x1, y1), fill=col)
            elif shapes[k] == "triangle":
                draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=col)
            else:
                draw.line((x0, y0, x1, y1), fill=col, width=int(rng.integers(4, 12)))
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5))))
        (folder / shapes[k]).mkdir(parents=True, exist_ok=True)
        img.save(folder / shapes[k] / f"{i:05d}.jpg", quality=90)
    (folder / ".done").write_text(str(n))
    return folder


def run_doctor(args: list[str], out: Path) -> float:
    """Wall seconds of one `cnnlab doctor` process with an empty decode cache."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"),
           "CNNLAB_CACHE": tempfile.mkdtemp(prefix="doctor-bench-cache-")}
    cmd = [sys.executable, "-m", "cnnlab", "doctor", *args, "--out", str(out)]
    print("$", " ".join(["cnnlab", "doctor", *args, "--out", str(out)]), flush=True)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - t0


def bench_hash(n: int) -> None:
    """Agreement and speed of our pHash against imagehash.phash on n jittered digits."""
    import imagehash
    import torch
    from PIL import Image

    from cnnlab.doctor.hashing import phash

    x, _ = jittered_digits(n)
    t0 = time.perf_counter()
    ours = phash(torch.from_numpy(x[:, None]))
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = np.array([int(str(imagehash.phash(Image.fromarray(a))), 16) for a in x],
                   dtype=np.uint64)
    t_ref = time.perf_counter() - t0
    diff = np.bitwise_count(ours ^ ref)
    print(f"{n} images 28x28: ours {t_ours:.3f} s, imagehash {t_ref:.3f} s")
    print(f"bits differing from imagehash: mean {diff.mean():.2f} of 64, "
          f"identical hashes {np.mean(diff == 0):.1%}, <= 4 bits {np.mean(diff <= 4):.1%}")
    # Same near-duplicate decisions? Compare pairs within 6 bits under each hash.
    from cnnlab.doctor.hashing import close_pairs

    a = {(int(i), int(j)) for i, j, _ in zip(*close_pairs(ours, 6), strict=True)}
    b = {(int(i), int(j)) for i, j, _ in zip(*close_pairs(ref, 6), strict=True)}
    both = len(a & b) / max(len(a | b), 1)
    print(f"pairs within 6 bits: ours {len(a)}, imagehash {len(b)}, Jaccard {both:.2f}")


def main() -> None:
    """Run one benchmark case."""
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=("hash", "digits", "jpg", "npy"))
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "doctor-bench")
    ap.add_argument("--extra", default="", help="More doctor options, e.g. '--skip labels'.")
    args = ap.parse_args()
    extra = args.extra.split()
    if args.case == "hash":
        bench_hash(args.n or 2000)
        return
    if args.case == "digits":
        n = args.n or 10000
        data = write_pngs(args.work / f"digits{n}", n)
        secs = run_doctor([str(data), "--image-size", "28", *extra], args.work / "out-digits")
    elif args.case == "jpg":
        n = args.n or 4000
        data = write_jpgs(args.work / f"jpg{n}", n)
        secs = run_doctor([str(data), "--image-size", "224", "--features", "backbone", *extra],
                          args.work / "out-jpg")
    else:
        if args.data is None:
            raise SystemExit("npy needs --data")
        secs = run_doctor([str(args.data), *extra], args.work / "out-npy")
    print(f"end to end: {secs:.1f} s")


if __name__ == "__main__":
    main()
