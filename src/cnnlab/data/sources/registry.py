"""The data sources by name: what --format chooses from and --format auto tries in turn.

Adding a format is one module defining a `Source` (see sources/source.py) plus its line in
SOURCES below (and its name in cnnlab/choices.py, which the CLI reads without importing this);
`register_source` adds one at run time, for a plugin or a test: `format=NAME` then validates
(settings.registered_formats reads SOURCES once this module is loaded).
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.sources import arrays, cifar, csvindex, digits, folder, idx
from cnnlab.data.sources.source import Source
from cnnlab.errors import DataError

AUTO = "auto"  # --format auto: detect_source decides
DEFAULT = "digits"  # read when no data path is given

# In the order --format lists them.
SOURCES: dict[str, Source] = {s.name: s for s in (
    folder.SOURCE, csvindex.SOURCE, arrays.SOURCE, cifar.SOURCE, idx.SOURCE, digits.SOURCE)}


def register_source(source: Source) -> Source:
    """Add (or replace) a source; it is then a --format name and, with `detect`, guessed."""
    if source.name == AUTO:
        raise ValueError(f"{AUTO!r} is not a source name: it means 'detect the format'")
    SOURCES[source.name] = source
    return source


def format_names() -> tuple[str, ...]:
    """What --format accepts: auto, then every source's name."""
    return (AUTO, *SOURCES)


def get_source(name: str) -> Source:
    """The source called `name`; a one-line error naming the choices otherwise."""
    if name not in SOURCES:
        raise DataError(f"unknown format {name!r}; choose one of {', '.join(format_names())}")
    return SOURCES[name]


def detect_source(path: Path) -> Source:
    """The source whose `detect` first recognises what is at `path`."""
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    for source in sorted((s for s in SOURCES.values() if s.detect), key=lambda s: s.priority):
        if source.detect(path):
            return source
    raise DataError(f"{path}: cannot tell the data format; pass --format (one of "
                    f"{', '.join(SOURCES)})")


def source_for(fmt: str, path: Path) -> Source:
    """The source `fmt` names, or the one detected at `path` for auto."""
    return detect_source(path) if fmt == AUTO else get_source(fmt)


def files_root(path: Path | None, fmt: str, image_dir: str | None) -> Path | None:
    """The folder item ids are relative to (None for arrays or an unknown format)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    source = detect_source(path) if fmt == AUTO else SOURCES.get(fmt)
    return source.root(path, image_dir) if source is not None and source.root else None
