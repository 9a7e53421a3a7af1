"""How a source is read and split (LoadOptions), apart from the code that reads it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_FILE_IMAGE_SIZE = 64


@dataclass
class CsvColumns:
    """Column names of a CSV index; the defaults are the EECS 445 layout."""

    path: str = "filename"
    label: str = "semantic_label"
    numeric: str = "numeric_label"
    partition: str = "partition"
    task: str = "task"


@dataclass
class LoadOptions:
    """How to read and split a source; every field has a sensible default."""

    format: str = "auto"
    image_size: int | None = None
    channels: int | None = None
    resize: str = "crop"
    val_split: float = 0.2
    test_split: float = 0.2
    seed: int = 0
    task: str | None = None
    image_dir: str | None = None
    columns: CsvColumns = field(default_factory=CsvColumns)
    skip_bad: bool = False
    use_cache: bool = True
    default_image_size: int = DEFAULT_FILE_IMAGE_SIZE
    # Arrays (npy/npz/CIFAR/IDX): values lo..hi are black..white; None = decided per file
    # from its whole content (data/value_range.py), recorded in meta["value_range"].
    value_range: tuple[float, float] | None = None
    layout: str = "auto"  # folders: auto | classes | splits (see data/sources/folder.py)
    # Centre crop of this side after resizing to image_size (torchvision's Resize(256) then
    # CenterCrop(224) is resize="shorter", image_size=256, crop_size=224).
    crop_size: int | None = None
    # The label value that marks an unlabeled image in npy/npz/IDX/CIFAR labels (e.g. -1);
    # None: every label must be a class index, and a -1 is refused rather than dropped.
    unlabeled_value: int | None = None
    # CSV partitions whose rows are skipped (and counted), e.g. ("challenge",); any other
    # partition that is not train/val/test is refused with its line.
    skip_partitions: tuple[str, ...] = ()
    # Not a user setting: read files only from the decode cache; a miss raises CacheMiss
    # instead of decoding (the doctor asking whether `train` already decoded the files).
    cache_only: bool = False


# progress(what, total) -> tick(n): how readers report decoding
Progress = Callable[[str, int], Callable[[int], None]] | None
