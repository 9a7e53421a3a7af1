"""A larger photo set for bench/transfer.py: each photo of DATA plus augmented copies.

    python bench/make_photos.py DATA OUT [--total 4000] [--seed 0]

DATA is a folder of JPGs in split/class/ folders (e.g. the hymenoptera ants/bees set, 396
photos). OUT gets every original (re-saved at quality 95) and then, round after round,
augmented re-encoded copies (random crop 75-100%, flip, brightness and colour 0.8-1.2,
rotation within 10 degrees, JPEG quality 80-95) until it holds --total photos, each copy in
its original's split and class folder: "cats/dogs-style" photos of realistic size.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from PIL import Image, ImageEnhance


def augmented(im: Image.Image, rng: random.Random) -> Image.Image:
    """One random crop/flip/brightness/colour/rotation of `im`."""
    w, h = im.size
    s = rng.uniform(0.75, 1.0)
    cw, ch = int(w * s), int(h * s)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    if rng.random() < 0.5:
        im = im.transpose(Image.FLIP_LEFT_RIGHT)
    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))
    im = ImageEnhance.Color(im).enhance(rng.uniform(0.8, 1.2))
    return im.rotate(rng.uniform(-10, 10), resample=Image.BILINEAR)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--total", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    files = sorted(p for p in a.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    if not files:
        raise SystemExit(f"error: no JPGs under {a.data}")
    rng = random.Random(a.seed)

    def target(f: Path, tag: int) -> Path:
        rel = f.relative_to(a.data)
        p = a.out / rel.parent / f"{f.stem}_{tag}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    n, round_ = 0, 0
    while n < a.total:
        for f in files:
            if n >= a.total:
                break
            im = Image.open(f).convert("RGB")
            if round_ == 0:
                im.save(target(f, 0), quality=95)
            else:
                augmented(im, rng).save(target(f, round_), quality=rng.randint(80, 95))
            n += 1
        round_ += 1
    print(f"wrote {n} photos to {a.out}")


if __name__ == "__main__":
    main()
