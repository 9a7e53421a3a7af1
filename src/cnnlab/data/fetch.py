"""`cnnlab data fetch NAME`: public data sets downloaded, checked (SHA-256) and unpacked.

Each set lands in <cache>/datasets/NAME in a layout `cnnlab train PATH` reads. Downloads go
to <cache>/datasets/downloads/NAME/FILE.part first and resume from there (HTTP Range); a file
only takes its final name once its SHA-256 matches, and the data set folder only appears once
everything is unpacked, so an interrupted fetch never leaves something that looks finished.
A body is checked against Content-Length and the known size: one that ends early is kept and
resumed, one that runs long is refused with nothing past the known size kept; a failed write is
reported as the disk's, not the network's.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.console import console
from cnnlab.data.cache import cache_root
from cnnlab.errors import DataError
from cnnlab.io import write_error_reason
from cnnlab.urls import mask_text, mask_url

MIRROR_ENV = "CNNLAB_DATA_MIRROR"  # a base URL serving NAME/FILE for every set (tests, mirrors)
CHUNK = 1 << 16
TIMEOUT_S = 30
RESUMES = 3  # resumes of a dropped download within one command (the next command resumes too)
RESUME_WAIT_S = 0.5  # times the retry number: a flapping link gets a moment to recover

Progress = Callable[[str, int, int | None], None] | None  # (file name, bytes so far, total)


@dataclass(frozen=True)
class Remote:
    """One file of a data set, with the SHA-256 it must have."""

    name: str
    sha256: str
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A public data set: where its files live and how they unpack."""

    name: str
    description: str
    bases: tuple[str, ...]  # URL folders tried in order; the first that answers wins
    files: tuple[Remote, ...]
    unpack: str  # "copy" (files are the data), "zip" or "tar"
    top: str | None = None  # the folder inside the archive that becomes the data set
    source: str = ""  # where the checksums were taken from


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def _idx(sha: tuple[str, ...], sizes: tuple[int, ...]) -> tuple[Remote, ...]:
    return tuple(Remote(n, s, z) for n, s, z in zip(_MNIST_FILES, sha, sizes, strict=True))


# SHA-256 sums: hymenoptera from pytorch/tutorials (.jenkins/download_data.py); MNIST, KMNIST
# and Fashion-MNIST from tensorflow/datasets (url_checksums/*.txt; the MNIST test files were
# also re-hashed here from a local copy whose MD5s match torchvision's); CIFAR-10 from Keras
# (keras/datasets/cifar10.py), whose size and MD5 match torchvision's.
_MNIST = _idx(("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
               "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
              (9912422, 28881, 1648877, 4542))
DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("hymenoptera", "ants vs bees photos, 2 classes, 245 train / 153 val (45 MB)",
            ("https://download.pytorch.org/tutorial/",),
            (Remote("hymenoptera_data.zip",
                    "fbc41b31d544714d18dd1230b1e2b455e1557766e13e67f9f5a7a23af7c02209"),),
            "zip", "hymenoptera_data", "pytorch/tutorials"),
    Dataset("mnist", "handwritten digits 28x28, 10 classes, 60k train / 10k test (11 MB)",
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            _MNIST, "copy", source="tensorflow/datasets"),
    # MNIST's 10,000 test digits in CS 475's .npy layout, split in file order 60/20/20: the
    # "mnist10k" set the docs' and the benchmark's numbers were measured on.
    Dataset("mnist10k", "MNIST's 10k test digits as CS 475 .npy files: 6k train / 2k dev / 2k "
            "test (1.6 MB)",
            ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
            _MNIST[2:], "npy-split", source="tensorflow/datasets"),  # the t10k files
    Dataset("kmnist", "Kuzushiji (cursive Japanese) characters 28x28, 10 classes, 60k / 10k "
            "(21 MB)", ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            _idx(("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4",
                  "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17",
                  "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5",
                  "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
                 (18165135, 29497, 3041136, 5120)),
            "copy", source="tensorflow/datasets"),
    Dataset("fashion-mnist", "Zalando clothing 28x28, 10 classes, 60k train / 10k test (30 MB)",
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            _idx(("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                  "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                  "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                  "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
                 (26421880, 29515, 4422102, 5148)),
            "copy", source="tensorflow/datasets"),
    Dataset("cifar10", "32x32 colour photos, 10 classes, 50k train / 10k test (163 MB)",
            ("https://www.cs.toronto.edu/~kriz/",),
            (Remote("cifar-10-python.tar.gz",
                    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                    170498071),),
            "tar", "cifar-10-batches-py", "keras"),
)}


def datasets_root() -> Path:
    """<cache>/datasets: where fetched data sets live."""
    return cache_root() / "datasets"


def dataset_dir(name: str) -> Path:
    """Where data set `name` is (or will be) unpacked."""
    return datasets_root() / lookup(name).name


def downloads_dir(name: str) -> Path:
    """Where the files of `name` are downloaded to, and where to put them by hand."""
    return datasets_root() / "downloads" / lookup(name).name


def lookup(name: str) -> Dataset:
    """The registered data set `name` (case and '_' vs '-' do not matter)."""
    key = name.strip().lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10", "ants-bees": "hymenoptera"
           }.get(key, key)
    if key not in DATASETS:
        raise DataError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key]


def urls(ds: Dataset, f: Remote) -> list[str]:
    """The URLs to try for file `f`: $CNNLAB_DATA_MIRROR/NAME/FILE alone when it is set."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        return [f"{mirror.rstrip('/')}/{ds.name}/{f.name}"]
    return [base + f.name for base in ds.bases]


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _offline(ds: Dataset, f: Remote, url: str, reason: object) -> DataError:
    where = downloads_dir(ds.name) / f.name
    part = where.with_name(f.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    failed = f"{ds.name}: cannot download {mask_url(url)} ({mask_text(str(reason))})"
    if have:  # what arrived is kept: say that running again resumes rather than restarts
        of = f" of {f.size}" if f.size else ""
        return DataError(f"{failed}; {have}{of} bytes are kept: run `cnnlab data fetch "
                         f"{ds.name}` again to resume, or download it by hand and put it at "
                         f"{where}")
    return DataError(f"{failed}; download it by hand, put it at {where} and run `cnnlab data "
                     f"fetch {ds.name}` again")


class _Dropped(ConnectionError):
    """The body stopped before its announced or known length; what came is in the .part file."""

    def __init__(self, done: int, total: int | None, why: object = "connection closed") -> None:
        of = f" of {total}" if total is not None else ""
        super().__init__(f"{why} after {done}{of} bytes")
        self.done = done


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _cannot_write(path: Path, exc: OSError) -> DataError:
    """A local disk error, told apart from a network one (a full cache is not being offline)."""
    return DataError(f"cannot write to {path}: {write_error_reason(exc)}; make room there or set "
                     f"CNNLAB_CACHE to a writable folder on a disk with room")


def _disk(path: Path, op: Callable[..., object], *args: object) -> object:
    """op(*args), a file operation on `path`; any OSError it raises is the local disk's."""
    try:
        return op(*args)
    except OSError as exc:
        raise _cannot_write(path, exc) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _open_url(url: str, have: int) -> http.client.HTTPResponse | None:
    """GET `url` from byte `have` on (HTTP Range); None when the server says nothing is left."""
    from cnnlab.version import __version__

    headers = {"User-Agent": f"cnnlab/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=TIMEOUT_S)  # noqa: S310 - http(s) only
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to send: the partial file is whole
            return None
        raise


def _too_long(url: str, name: str, size: int) -> DataError:
    return DataError(f"{mask_url(url)} sends more than the {size} bytes {name} has; refused "
                     f"(nothing past what was already here is kept), try another mirror "
                     f"({MIRROR_ENV})")


def _download(url: str, part: Path, progress: Progress, name: str, size: int | None) -> None:
    """Append the rest of `url` to `part` (HTTP Range), or restart it when the server says no.

    Never writes past the known size or Content-Length; a body that ends early raises _Dropped
    with what came kept in `part`, so the next try resumes from there.
    """
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have >= size:
        if have == size:
            return  # all here already: the hash decides
        _disk(part, part.unlink)  # longer than the file can be: not a prefix of it
        have = 0
    resp = _open_url(url, have)
    if resp is None:
        return
    with resp:
        start = have if have and resp.status == 206 else 0  # a 200 is the whole file again
        length = resp.headers.get("Content-Length")
        announced = start + int(length) if length and length.isdigit() else None
        if size is not None and announced is not None and announced > size:
            raise _too_long(url, name, size)  # refused before a byte is written
        total = size if size is not None else announced
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if start else os.O_TRUNC)
        fd = _disk(part, os.open, part, flags, 0o644)
        try:
            done = _copy_body(resp, fd, part, start, total, progress, name)
            if total is not None and resp.read(1):  # more than the file has: drop this answer
                _disk(part, os.ftruncate, fd, start)
                raise _too_long(url, name, total)
            _disk(part, os.fsync, fd)
        finally:
            os.close(fd)
    if total is not None and done < total:  # read() at EOF returns b"": short, not finished
        raise _Dropped(done, total)


def _copy_body(resp: http.client.HTTPResponse, fd: int, part: Path, done: int,
               total: int | None, progress: Progress, name: str) -> int:
    """Body into `fd` until EOF or `total` bytes in the file; returns the bytes in the file."""
    while total is None or done < total:
        want = CHUNK if total is None else min(CHUNK, total - done)
        try:
            block = resp.read(want)
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            raise _Dropped(done, total, type(exc).__name__) from exc
        if not block:
            break
        _disk(part, _write_all, fd, block)
        done += len(block)
        if progress:
            progress(name, done, total)
    return done


def _download_resuming(ds: Dataset, f: Remote, url: str, part: Path, progress: Progress) -> None:
    """_download, resumed from where it stopped when the connection drops, a few times."""
    for retry in range(1, RESUMES + 2):
        try:
            _download(url, part, progress, f.name, f.size)
            return
        except _Dropped as exc:
            if retry > RESUMES:
                raise
            console.print(f"{ds.name}: {f.name}: {exc}; resuming from byte {exc.done} "
                          f"(retry {retry} of {RESUMES})")
            time.sleep(RESUME_WAIT_S * retry)


def fetch_file(ds: Dataset, f: Remote, progress: Progress = None) -> Path:
    """downloads/NAME/FILE, downloaded or resumed and verified; a bad download is deleted."""
    folder = downloads_dir(ds.name)
    _disk(folder, lambda: folder.mkdir(parents=True, exist_ok=True))
    final, part = folder / f.name, folder / (f.name + ".part")
    if final.is_file():  # finished earlier, or put there by hand: still checked
        got = sha256_of(final)
        if got == f.sha256:
            return final
        final.unlink()
        raise DataError(f"{final}: SHA-256 {got} is not the expected {f.sha256}; the file was "
                        f"removed, run `cnnlab data fetch {ds.name}` again")
    last: Exception | None = None
    last_url = ""
    for url in urls(ds, f):
        try:
            _download_resuming(ds, f, url, part, progress)
            break
        except (OSError, http.client.HTTPException) as exc:  # URLError, timeouts, resets
            last, last_url = exc, url
    else:
        raise _offline(ds, f, last_url, getattr(last, "reason", None) or last)
    got = sha256_of(part)
    if got != f.sha256:
        part.unlink(missing_ok=True)
        raise DataError(f"{ds.name}: {f.name} from {mask_url(url)} has SHA-256 {got}, expected "
                        f"{f.sha256}; the download was removed, try again or use another "
                        f"mirror ({MIRROR_ENV})")
    os.replace(part, final)
    return final


def _safe_members(names: list[str], archive: Path) -> None:
    for n in names:
        p = Path(n)
        if p.is_absolute() or ".." in p.parts:
            raise DataError(f"{archive}: refusing archive member {n!r} outside the target")


def _npy_split(files: list[Path], out: Path) -> None:
    """Gzipped IDX images and labels (MNIST's format) as CS 475's
    mnist_{,dev_,test_}{images,labels}.npy, split in file order 60/20/20."""
    from cnnlab.data.sources.idx import read_idx

    images, labels = (read_idx(f) for f in files)
    n = len(images)
    cuts = {"": (0, n * 6 // 10), "dev_": (n * 6 // 10, n * 8 // 10), "test_": (n * 8 // 10, n)}
    for part, (a, b) in cuts.items():
        np.save(out / f"mnist_{part}images.npy", images[a:b])
        np.save(out / f"mnist_{part}labels.npy", labels[a:b])


def _unpack(ds: Dataset, files: list[Path], tmp: Path) -> Path:
    """Unpack into tmp; return the folder that becomes the data set."""
    if ds.unpack in ("npy-split", "copy"):
        out = tmp / "data"
        out.mkdir()
        if ds.unpack == "npy-split":
            _npy_split(files, out)
        else:
            for f in files:
                shutil.copyfile(f, out / f.name)
        return out
    archive = files[0]
    try:
        if ds.unpack == "zip":
            with zipfile.ZipFile(archive) as z:
                _safe_members(z.namelist(), archive)
                z.extractall(tmp)
        else:
            with tarfile.open(archive) as t:
                _safe_members(t.getnames(), archive)
                if hasattr(tarfile, "data_filter"):
                    t.extractall(tmp, filter="data")
                else:  # Python without PEP 706: members were checked above
                    t.extractall(tmp)  # noqa: S202
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DataError(f"{archive}: cannot unpack ({exc})") from None
    top = tmp / ds.top if ds.top else tmp
    if not top.is_dir():
        raise DataError(f"{archive}: has no {ds.top}/ folder")
    return top


def _install(ds: Dataset, files: list[Path], target: Path) -> None:
    """Unpack the verified files beside `target`, then rename the result to it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ds.name}.", dir=target.parent))
    try:
        ready = _unpack(ds, files, tmp)
        if target.is_dir():  # --force: the old copy goes only once the new one is ready
            shutil.rmtree(target)
        os.replace(ready, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str, progress: Progress = None, force: bool = False) -> Path:
    """Download, verify and unpack data set `name`; return the folder to train on."""
    ds = lookup(name)
    target = dataset_dir(ds.name)
    if target.is_dir() and not force:
        return target
    files = [fetch_file(ds, f, progress) for f in ds.files]
    try:
        _install(ds, files, target)
    except OSError as exc:
        if exc.errno not in _DISK_ERRNOS:
            raise
        raise _cannot_write(Path(exc.filename or target.parent), exc) from None
    if ds.unpack != "copy":  # the unpacked folder holds everything; keep no second copy
        for f in files:
            f.unlink(missing_ok=True)
    return target


def status(name: str) -> str:
    """'fetched', 'partial' (a download to resume) or '' for data set `name`."""
    if dataset_dir(name).is_dir():
        return "fetched"
    folder = downloads_dir(name)
    return "partial" if folder.is_dir() and any(folder.iterdir()) else ""
