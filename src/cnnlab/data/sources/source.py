"""What a data source is: the few functions every caller of the registry asks of it.

A source module (folder.py, csvindex.py, arrays.py, ...) defines one `Source`, and
sources/registry.py lists it; `register_source` adds one at run time. Only `name` and `read`
are required: a source without `files`/`root` is read as arrays, one without `detect` is
never chosen by `--format auto`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnlab.data.imageset import ImageSet
    from cnnlab.data.options import LoadOptions, Progress


@dataclass
class IndexRow:
    """One image file of a source as a row of a CSV index."""

    src: Path  # the image file
    rel: str  # its name relative to the data root (kept as the index's file name)
    row: dict  # the index row (partition already normalised to train/val/test or "")
    stratum: str  # what a stratified split keeps in proportion: "task/label" or the label


@dataclass
class IndexRows:
    """A file source as CSV index rows: what offline augmentation copies and re-indexes."""

    name: str  # the data set's name (augmented_<name>.csv)
    rows: list[IndexRow]
    fieldnames: list[str]
    path_col: str
    part_col: str


@dataclass(frozen=True)
class Source:
    """One data format: how to recognise it on disk, read it, and find its image files."""

    name: str
    # read(path, opts, progress): one ImageSet whose `partition` marks train/val/test items;
    # meta "name" may be set (else the file or folder name), "format" and "path" are set for it
    read: Callable[[Path | None, LoadOptions, Progress], ImageSet]
    # detect(path): True when `path` (which exists) is this format; None: never guessed
    detect: Callable[[Path], bool] | None = None
    # --format auto tries lower numbers first (folder, the catch-all, comes last)
    priority: int = 50
    # files(path, opts): the image files read, before any decoding (None: an array format)
    files: Callable[[Path, LoadOptions], list[Path]] | None = None
    # root(path, image_dir): the folder item ids are relative to (None: not files)
    root: Callable[[Path, str | None], Path | None] | None = None
    # predict(path, opts, progress): read for predicting, where labels are optional
    predict: Callable[[Path, LoadOptions, Progress], ImageSet] | None = None
    # rows(path, opts): the source as index rows for offline augmentation (None: decode it)
    rows: Callable[[Path, LoadOptions], IndexRows | None] | None = None
    # False: a built-in set that ignores the path (and is read when none is given)
    uses_path: bool = True
