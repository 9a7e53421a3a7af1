"""Every item of every split in one numbered pool, with where it came from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.imageset import DataSplits, ImageSet


@dataclass
class Pool:
    """Items of train, val and test in that order; item i is split_names[i]'s local[i]-th."""

    sets: dict[str, ImageSet]
    split_names: np.ndarray  # str [N]
    local: np.ndarray  # int [N]: index inside its split
    ids: list[str]
    labels: np.ndarray  # int [N], -1 = unlabeled
    classes: list[str]
    paths: list[Path | None]  # the image file of each item, when the source is files
    root: Path | None = None  # folder the file ids are relative to

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> np.ndarray:
        """uint8 [C,H,W] of item i."""
        return np.asarray(self.sets[str(self.split_names[i])].images[int(self.local[i])])

    def parts(self) -> list[torch.Tensor]:
        """The image tensors of the splits, in pool order."""
        return [s.images for s in self.sets.values()]

    def where(self, name: str) -> np.ndarray:
        """Pool indices of the items of split `name`."""
        return np.flatnonzero(self.split_names == name)

    def describe(self, i: int) -> dict:
        """What doctor.json says about item i."""
        lab = int(self.labels[i])
        return {"split": str(self.split_names[i]), "id": self.ids[i],
                "path": str(self.paths[i]) if self.paths[i] is not None else None,
                "label": self.classes[lab] if 0 <= lab < len(self.classes) else None}


def build_pool(splits: DataSplits, root: Path | None = None) -> Pool:
    """Number the items of `splits`; ids are resolved to files under `root` when they exist."""
    sets = {n: s for n, s in splits.items() if len(s)}
    names = np.concatenate([np.full(len(s), n) for n, s in sets.items()]) if sets else \
        np.zeros(0, dtype=str)
    local = np.concatenate([np.arange(len(s)) for s in sets.values()]) if sets else \
        np.zeros(0, dtype=int)
    ids = [i for s in sets.values() for i in s.ids]
    labels = np.concatenate([s.labels.numpy() for s in sets.values()]) if sets else \
        np.zeros(0, dtype=int)
    paths = [_resolve(root, i) for i in ids]
    return Pool(sets, names.astype(str), local, ids, labels, list(splits.classes), paths, root)


def _resolve(root: Path | None, item_id: str) -> Path | None:
    if root is None:
        return None
    p = Path(item_id)
    full = p if p.is_absolute() else root / p
    return full if full.is_file() else None


def source_root(path: Path | None, fmt: str, image_dir: str | None) -> Path | None:
    """The folder file ids are relative to (None for arrays): the source's own rule."""
    from cnnlab.data.sources.registry import files_root

    return files_root(path, fmt, image_dir)
