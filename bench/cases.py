"""The four benchmark cases of issue 7 and the data they need (made here or read from ../shared)."""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("CNNLAB_BENCH_WORK") or ROOT / "bench" / ".work")
# ../shared/data next to the checkout; CNNLAB_SHARED_DATA points elsewhere (a git worktree)
SHARED_DATA = Path(os.environ.get("CNNLAB_SHARED_DATA") or ROOT.parent / "shared" / "data")


def real_data(shared_name: str, fetched_name: str) -> Path:
    """A real data set: the project's copy under SHARED_DATA, else what `cnnlab data fetch
    FETCHED_NAME` put in the cache (so anyone can run the bench)."""
    shared = SHARED_DATA / shared_name
    if shared.is_dir():
        return shared
    from cnnlab.data.fetch import dataset_dir

    return dataset_dir(fetched_name)


@dataclass
class Case:
    """One model + data + training recipe, run identically by every variant."""

    key: str  # a, b, c, d
    title: str
    model: str
    data: Path
    image_size: int
    batch_size: int
    epochs: int
    lr: float = 1e-3
    augment: str | None = None
    # how the textbook loop sees the data: "array" (uint8 array in memory, like torchvision's
    # CIFAR10/MNIST datasets) or "files" (PIL.Image.open per item, like ImageFolder)
    textbook_source: str = "array"
    # textbook resize for file sources: (resize_to, center_crop) like the seeds' transforms
    textbook_resize: tuple[int, int | None] = (32, None)
    imagenet_norm: bool = False
    pretrained: bool = False  # frozen pretrained backbone, train the head only (case d)
    peers: bool = True  # run Lightning and skorch too
    val_split: float = 0.0  # sources with a test/val partition need no extra val split
    cnnlab_settings: dict = field(default_factory=dict)
    note: str = ""


def write_synthetic_cifar(folder: Path, n_train: int, n_test: int, seed: int = 0,
                          flip_invariant: bool = False) -> Path:
    """CIFAR-10 python batches of learnable 32x32 RGB images (class = a smooth colour pattern).

    Each class is a random low-frequency colour template; an image is its template shifted by up
    to 3 pixels, maybe mirrored, plus a second class's template as a distractor, with random
    contrast, brightness and pixel noise: neither trivial nor hopeless. Crops are
    label-preserving. With `flip_invariant` the distractor is mirrored with the image, so flips
    are too; without it (the data of bench/run.py's results, kept as measured) only the class
    template is mirrored, and a flip makes images the set never holds.
    """
    folder = Path(folder)
    version = "v3" if flip_invariant else "v2"
    stamp = folder / f".done-{version}-{n_train}-{n_test}-{seed}"
    if stamp.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(".done-*"):
        old.unlink()
    rng = np.random.default_rng(seed)
    k = 10
    coarse = rng.normal(0, 1, (k, 3, 6, 6)).astype(np.float32)
    # bilinear upsampling of the 6x6 templates to 38x38 (room for +-3 px shifts)
    src = np.linspace(0, 5, 38)
    i0 = np.floor(src).astype(int).clip(0, 4)
    f = (src - i0).astype(np.float32)
    rows = coarse[:, :, i0, :] * (1 - f)[None, None, :, None] + \
        coarse[:, :, i0 + 1, :] * f[None, None, :, None]
    templates = rows[:, :, :, i0] * (1 - f) + rows[:, :, :, i0 + 1] * f

    def make(n: int) -> tuple[np.ndarray, list[int]]:
        labels = rng.integers(0, k, n)
        out = np.empty((n, 3, 32, 32), dtype=np.uint8)
        for s in range(0, n, 4096):
            lab = labels[s:s + 4096]
            m = len(lab)
            dy, dx = rng.integers(0, 7, m), rng.integers(0, 7, m)
            t = np.stack([templates[c, :, y:y + 32, x:x + 32]
                          for c, y, x in zip(lab, dy, dx, strict=True)])
            # a second, random class mixed in makes neighbouring classes confusable
            # flip-invariant: mixed in before the mirroring, so a flipped image is a likely one
            # (the random draws stay in each variant's order: v2's data is as measured)
            if flip_invariant:
                t = t + 0.8 * templates[rng.integers(0, k, m), :, 3:35, 3:35]
            flip = rng.random(m) < 0.5
            t[flip] = t[flip, :, :, ::-1]
            if not flip_invariant:
                t = t + 0.8 * templates[rng.integers(0, k, m), :, 3:35, 3:35]
            t = t * rng.uniform(0.6, 1.4, (m, 1, 1, 1)) + rng.normal(0, 0.4, (m, 3, 1, 1))
            t = t + rng.normal(0, 1.2, t.shape)
            out[s:s + m] = np.clip(128 + 40 * t, 0, 255).astype(np.uint8)
        return out.reshape(n, 3072), labels.tolist()

    per = max(1, -(-n_train // 5))
    x, y = make(n_train)
    for b in range(5):
        sl = slice(b * per, min((b + 1) * per, n_train))
        with open(folder / f"data_batch_{b + 1}", "wb") as fh:
            pickle.dump({b"data": x[sl], b"labels": y[sl]}, fh)
    xt, yt = make(n_test)
    with open(folder / "test_batch", "wb") as fh:
        pickle.dump({b"data": xt, b"labels": yt}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"class{i}".encode() for i in range(k)]}, fh)
    stamp.touch()
    return folder


def build_cases(quick: bool, only: str = "abcd", images: int | None = None,
                epochs: int | None = None) -> list[Case]:
    """The cases to run; `quick` shrinks data and epochs to a smoke test of the harness.

    `images` sets case (a)'s synthetic training set size, `epochs` every case's epochs.
    """
    cases = []
    if "a" in only:
        n_train, n_test = (2000, 500) if quick else (40000, 5000)
        if images:
            n_train, n_test = images, max(500, images // 8)
        folder = write_synthetic_cifar(WORK / f"cifar-synth-{n_train}", n_train, n_test)
        cases.append(Case("a", f"USI myNet, {n_train // 1000}k synthetic CIFAR-format 32x32 RGB, "
                               "hflip,crop=4", "usi-mynet", folder, 32, 32,
                          1 if quick else 3, augment="hflip,crop=4"))
    hym = real_data("hymenoptera_data", "hymenoptera")
    mnist = real_data("mnist10k", "mnist10k")
    if "b" in only and mnist.is_dir():
        cases.append(Case("b", "CS 475 conv net, mnist10k (6k train, 28x28 grey)",
                          "cs475-convnet", mnist, 28, 100, 1 if quick else 5, lr=3e-3))
    if "c" in only and hym.is_dir():
        cases.append(Case("c", "EECS 553 CNN, hymenoptera JPG files at 32x32",
                          "eecs553-cnn", hym, 32, 32, 2 if quick else 10,
                          textbook_source="files", textbook_resize=(32, None)))
    if "d" in only and hym.is_dir():
        size = 64 if quick else 224  # quick: a smoke test, not the 224 measurement
        cases.append(Case("d", f"frozen EfficientNet-Lite0 (ImageNet), hymenoptera at {size}",
                          "efficientnet-lite0", hym, size, 32, 1 if quick else 6,
                          textbook_source="files", textbook_resize=(size * 8 // 7, size),
                          imagenet_norm=True, pretrained=True, peers=False,
                          cnnlab_settings={"pretrained": True, "freeze": "all"}))
    if epochs:
        for c in cases:
            c.epochs = epochs
    return cases
