"""Generic file I/O: every file cnnlab writes goes through here, atomically.

A write goes to a temp file beside the target, is fsynced and renamed over it; a failure (full
disk, Ctrl-C) removes the temp file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import quote, urlsplit

import yaml

from cnnlab.csvsafe import safe_cell, unescape_cell

TEMP_SUFFIX = ".tmp"
# A URL scheme (two letters or more: "C:" is a Windows drive, not a scheme).
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")
# Characters a path keeps in a link: RFC 3986 path characters except ":" (a first segment
# holding one would be read as a scheme, "javascript:alert(1)/" among them).
_PATH_SAFE = "/!$&'()*+,;=@~"


def write_error_reason(exc: OSError) -> str:
    """A short, plain reason for a failed write (disk full, file size limit, quota, ...)."""
    reasons = {errno.ENOSPC: "No space left on device (the disk is full)",
               errno.EFBIG: "File too large (the file size limit is reached)",
               errno.EDQUOT: "Disk quota exceeded",
               errno.EROFS: "Read-only file system",
               errno.EACCES: "Permission denied", errno.EPERM: "Permission denied"}
    return reasons.get(exc.errno or 0, exc.strerror or str(exc) or type(exc).__name__)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = TEMP_SUFFIX) -> Iterator[Path]:
    """A temp path beside `path` for writers that want a file name (savefig, onnx, np.save);
    renamed over `path` when the block ends without error, removed otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:  # name the file the user asked for, not our temp file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        if exc.errno is None:
            raise
        # A full disk while writing, a read-only target: name the target, not the temp file.
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        _unlink(tmp)
        raise


def _unlink(p: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(p)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes atomically (temp file, fsync, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically (undecodable file names are written escaped)."""
    atomic_write_bytes(path, text.encode("utf-8", errors="backslashreplace"))


def write_yaml(path: str | Path, data: dict) -> None:
    """Write YAML atomically."""
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def read_json(path: str | Path, what: str = "JSON file", hint: str = "") -> dict:
    """A JSON object from a file cnnlab wrote; one line naming the file when it is unreadable,
    truncated, damaged or not an object (`hint`: how to get a good one back)."""
    from cnnlab.errors import CnnlabError

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "nested too deeply" \
            if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:120]
        raise CnnlabError(f"{path}: not a readable {what} ({reason}){hint}") from None
    if not isinstance(doc, dict):
        raise CnnlabError(f"{path}: not a {what} (a {type(doc).__name__}, not a mapping)")
    return doc


def write_json(path: str | Path, data: object) -> None:
    """Write JSON atomically."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_csv(path: str | Path, rows: Sequence[dict], fieldnames: Sequence[str] | None = None
              ) -> None:
    """Write rows (dicts) as CSV atomically; columns in first-seen order unless given."""
    buf = io.StringIO()
    keys: list[str] = list(fieldnames or [])
    if not fieldnames:
        for r in rows:
            keys += [k for k in r if k not in keys]
    if keys:
        # Cells are neutralised so no name (class, file) runs as a spreadsheet formula.
        w = csv.writer(buf, lineterminator="\n")
        w.writerow([safe_cell(k) for k in keys])
        for r in rows:
            w.writerow([safe_cell(_fmt(r.get(k))) for k in keys])
    write_text(path, buf.getvalue())


def _fmt(v: object) -> object:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else v


def read_csv(path: str | Path) -> list[dict]:
    """Rows of a CSV written by write_csv, numbers parsed back."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            k, v = unescape_cell(k), unescape_cell(v) if v else v
            try:
                d[k] = int(v) if re.fullmatch(r"-?\d+", v or "") else float(v) if v else None
            except ValueError:
                d[k] = v
        out.append(d)
    return out


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping (empty when the file is empty); a damaged file is one line naming it."""
    from cnnlab.errors import CnnlabError

    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CnnlabError(f"{path}: not a text file (damaged?)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CnnlabError(f"{path}: not valid YAML{where}") from None
    except OSError as exc:
        raise CnnlabError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise CnnlabError(f"{path}: expected KEY: VALUE lines, found {type(doc).__name__}")
    return doc


def remove_stale_temps(folder: str | Path) -> int:
    """Delete temp files a killed process left behind (`.NAME.XXXX.tmp`); returns the count."""
    folder, removed = Path(folder), 0
    for p in list(folder.glob(f".*{TEMP_SUFFIX}")) + list(folder.glob(f"plots/.*{TEMP_SUFFIX}")):
        with contextlib.suppress(OSError):
            p.unlink()
            removed += 1
    return removed


def safe_href(target: str | Path) -> str | None:
    """An href for a page: a path as a percent-encoded relative link, an http(s) URL as it
    is; None for every other scheme (javascript:, data:, file:, vbscript:, ...).

    A Path is always a file path (a folder may be named `javascript:alert(1)`); a str with a
    scheme is a URL. The result still needs HTML escaping.
    """
    if isinstance(target, str) and _SCHEME.match(target):
        url = urlsplit(target)
        return target if url.scheme.lower() in ("http", "https") and url.netloc else None
    href = quote(Path(target).as_posix(), safe=_PATH_SAFE)
    # "//host/x" would be a link to another host; a path means the local folder "/host/x".
    return "/" + href.lstrip("/") if href.startswith("//") else href
