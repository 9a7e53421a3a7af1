"""Small synthetic stand-ins for the five course data sets, in the layouts the seeds use.

    python docs/make_seed_data.py [OUT]        (default: seed_data/)

writes, in a few seconds and a few MB:
  OUT/dogs/{train,val}/<breed>/*.png          EECS 553 (a)-(f): 5 breeds, 64x64 colour
  OUT/dogcat/{train,val}/{cat,dog}/*.png      EECS 553 (g)-(h): imbalanced 60 cats / 6 dogs
  OUT/cifar-10-batches-py/                    COMP 6721, USI: CIFAR-10 pickle batches, 32x32
  OUT/quickdraw/fruit_*.npy                   CS 475: 28x28 uint8, 6 classes, test unlabeled
  OUT/eecs445/dogs.csv + images/              EECS 445: CSV index, source and target tasks
  OUT/cats_dogs/{training_set,test_set}/...   a Kaggle-style cats-vs-dogs folder

Every class is a coloured blob at its own place and hue plus noise, so the seeds' models learn
something in a few epochs; the numbers in docs/seeds.md come from exactly these files.
"""

from __future__ import annotations

import csv
import pickle
import sys
from pathlib import Path

import numpy as np
from PIL import Image

RNG = np.random.default_rng(475)


def picture(k: int, n_classes: int, size: int, channels: int = 3) -> np.ndarray:
    """One uint8 image [H,W,C] of class k: a bright disc whose place and colour depend on k."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = 2 * np.pi * k / n_classes
    cy, cx = 0.5 + 0.28 * np.sin(angle), 0.5 + 0.28 * np.cos(angle)
    # place jitter and noise make neighbouring classes overlap: accuracies are not all 100%
    cy, cx = cy + RNG.normal(0, 0.12), cx + RNG.normal(0, 0.12)
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < 0.03).astype(float)
    hue = np.array([np.cos(angle), np.cos(angle + 2.1), np.cos(angle + 4.2)]) * 0.2 + 0.5
    img = RNG.uniform(0.05, 0.6, (size, size, 3)) + disc[..., None] * hue * 0.5
    img = np.clip(img * 255, 0, 255).astype(np.uint8)
    return img if channels == 3 else img.mean(2, keepdims=True).astype(np.uint8)


def folder(root: Path, counts: dict[str, dict[str, int]], size: int) -> None:
    """root/<split>/<class>/<i>.png for each split's class counts."""
    for split, per_class in counts.items():
        names = list(per_class)
        for k, name in enumerate(names):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class[name]):
                Image.fromarray(picture(k, len(names), size)).save(d / f"{name}_{i:03d}.png")


def cifar(root: Path, n_train: int = 1500, n_test: int = 500) -> None:
    """CIFAR-10 python batches: data_batch_1..2, test_batch, batches.meta."""
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    root.mkdir(parents=True, exist_ok=True)

    def batch(n: int) -> dict:
        labels = [int(v) for v in RNG.integers(0, 10, n)]
        data = np.stack([picture(k, 10, 32).transpose(2, 0, 1).reshape(-1) for k in labels])
        return {b"data": data, b"labels": labels}

    for i in (1, 2):
        with open(root / f"data_batch_{i}", "wb") as fh:
            pickle.dump(batch(n_train // 2), fh)
    with open(root / "test_batch", "wb") as fh:
        pickle.dump(batch(n_test), fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names}, fh)


def quickdraw(root: Path) -> None:
    """CS 475's layout: fruit_images.npy [N,28,28] uint8, fruit_labels.npy, dev, test."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, labeled in (("fruit", 1800, True), ("fruit_dev", 600, True),
                               ("fruit_test", 600, False)):
        y = RNG.integers(0, 6, n).astype(np.uint8)
        x = np.stack([picture(int(k), 6, 28, channels=1)[..., 0] for k in y])
        np.save(root / f"{prefix}_images.npy", x)
        if labeled:
            np.save(root / f"{prefix}_labels.npy", y)


def eecs445(root: Path) -> None:
    """dogs.csv (filename,semantic_label,partition,numeric_label,task) and images/*.png:
    source task 8 breeds (train/val/test), target task 2 breeds (train/val/test)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    breeds = ["Samoyed", "Miniature_Poodle", "Saint_Bernard", "Great_Dane", "Dalmatian",
              "Chihuahua", "Siberian_Husky", "Yorkshire_Terrier", "Collie", "Golden_Retriever"]
    rows, i = [], 0
    for num, breed in enumerate(breeds):
        task = "target" if num >= 8 else "source"
        for part, n in (("train", 30), ("val", 8), ("test", 8)):
            for _ in range(n):
                name = f"{i:05d}.png"
                Image.fromarray(picture(num, len(breeds), 64)).save(root / "images" / name)
                rows.append({"filename": name, "semantic_label": breed, "partition": part,
                             "numeric_label": num, "task": task})
                i += 1
    with open(root / "dogs.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(out: str = "seed_data") -> None:
    """Write every data set under `out`."""
    root = Path(out)
    folder(root / "dogs", {"train": dict.fromkeys(
        ["African_hunting_dog", "Chihuahua", "Dhole", "Dingo", "Japanese_spaniel"], 60),
        "val": dict.fromkeys(["African_hunting_dog", "Chihuahua", "Dhole", "Dingo",
                              "Japanese_spaniel"], 20)}, 64)
    folder(root / "dogcat", {"train": {"cat": 60, "dog": 6}, "val": {"cat": 30, "dog": 6}}, 64)
    folder(root / "cats_dogs", {"training_set": {"cats": 40, "dogs": 40},
                                "test_set": {"cats": 10, "dogs": 10}}, 48)
    cifar(root / "cifar-10-batches-py")
    quickdraw(root / "quickdraw")
    eecs445(root / "eecs445")
    print(f"wrote {root}/: dogs, dogcat, cats_dogs, cifar-10-batches-py, quickdraw, eecs445")


if __name__ == "__main__":
    main(*sys.argv[1:2])
