"""The in-memory form of every data source."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cnnlab.data import mapped

PARTITIONS = ("train", "val", "test")


@dataclass
class ImageSet:
    """Images decoded once: uint8 [N,C,H,W], int64 labels (-1 = unlabeled), class names, ids."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    ids: list[str]
    partition: np.ndarray | None = None  # per-item "train"/"val"/"test"/"" from the source
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"ImageSet images must be uint8 [N,C,H,W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        n = self.images.shape[0]
        if self.labels.shape != (n,) or len(self.ids) != n:
            raise ValueError("ImageSet images, labels and ids must have the same length")
        if self.partition is not None and len(self.partition) != n:
            raise ValueError("ImageSet partition must have one entry per image")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        """Number of image channels (1 or 3)."""
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of every image."""
        return int(self.images.shape[2]), int(self.images.shape[3])

    @property
    def num_classes(self) -> int:
        """Number of class names."""
        return len(self.classes)

    @property
    def labeled(self) -> bool:
        """True when every item has a label."""
        return len(self) > 0 and bool((self.labels >= 0).all())

    def subset(self, index: np.ndarray | torch.Tensor | list[int]) -> ImageSet:
        """The items at `index`, in that order.

        In-memory sets are copied. Memory-mapped sets (the decode cache) stay on disk: a
        contiguous range is a view, anything else big enough gets its own mapped file, so
        splitting a set larger than RAM never loads it.
        """
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        part = None if self.partition is None else self.partition[idx.numpy()]
        meta = dict(self.meta)
        images = self._mapped_take(idx.numpy(), meta) if "mmap_file" in meta else None
        if images is None:
            images = self.images[idx]
            meta.pop("mmap_file", None)
        return ImageSet(images, self.labels[idx], list(self.classes),
                        [self.ids[i] for i in idx.tolist()], part, meta)

    def _mapped_take(self, idx: np.ndarray, meta: dict) -> torch.Tensor | None:
        if len(idx) and (np.diff(idx) == 1).all():
            return self.images[int(idx[0]): int(idx[-1]) + 1]
        if len(idx) * self.images[0].numel() < mapped.SUBSET_ON_DISK_BYTES:
            return None
        got = mapped.disk_subset(self.images, meta["mmap_file"], idx)
        if got is None:
            return None
        meta["mmap_file"] = got[1]
        return got[0]

    def class_counts(self) -> list[int]:
        """Number of labeled items per class."""
        lab = self.labels[self.labels >= 0]
        return torch.bincount(lab, minlength=self.num_classes).tolist()


@dataclass
class DataSplits:
    """Train / validation / test ImageSets sharing one class list."""

    train: ImageSet
    val: ImageSet | None
    test: ImageSet | None
    source: str = ""
    split_note: str = ""

    def get(self, name: str) -> ImageSet | None:
        """The split called `name` ("train", "val" or "test")."""
        if name not in PARTITIONS:
            raise ValueError(f"unknown split {name!r}; choose train, val or test")
        return getattr(self, name)

    @property
    def classes(self) -> list[str]:
        """Class names, shared by all splits."""
        return self.train.classes

    def items(self) -> list[tuple[str, ImageSet]]:
        """(name, ImageSet) for every split present."""
        return [(n, s) for n in PARTITIONS if (s := getattr(self, n)) is not None]
