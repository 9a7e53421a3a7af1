"""`cnnlab data fetch` against fixture files served from 127.0.0.1 (never the real sites)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import subprocess
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import digits_arrays, pattern_images, run_cli
from PIL import Image

from cnnlab.data import fetch
from cnnlab.data.load import load_data
from cnnlab.errors import DataError

pytestmark = pytest.mark.slow  # real processes, browsers or full runs: `make test` only


class Server:
    """Serves {"/NAME/FILE": bytes}; honours Range unless told not to; logs every request.

    Faults: `drops[path]` lists, answer by answer, how many body bytes to send before closing
    the connection (the headers still announce them all); `extra` is appended to every body;
    `length=False` sends no Content-Length (the body then ends where the connection does).
    """

    def __init__(self, files: dict[str, bytes], ranges: bool = True,
                 drops: dict[str, list[int]] | None = None, extra: bytes = b"",
                 length: bool = True) -> None:
        self.files, self.ranges, self.log = files, ranges, []
        self.drops, self.extra, self.length = drops or {}, extra, length
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:  # noqa: N802
                body = outer.files.get(self.path)
                rng = self.headers.get("Range")
                outer.log.append((self.path, rng))
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng[6:].split("-")[0]) if rng and outer.ranges else 0
                if start >= len(body) and rng:
                    self.send_response(416)
                    self.end_headers()
                    return
                chunk = body[start:] + outer.extra
                self.send_response(206 if start else 200)
                if outer.length:
                    self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                cut = outer.drops.get(self.path)
                self.wfile.write(chunk[:cut.pop(0)] if cut else chunk)  # HTTP/1.0: then closed

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sent(self, path: str) -> int:
        """Bytes of `path` the server sent (a resumed file is sent from its offset)."""
        total = 0
        for p, rng in self.log:
            if p == path:
                start = int(rng[6:].split("-")[0]) if rng and self.ranges else 0
                total += max(0, len(self.files[path]) - start)
        return total


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _idx_gz(arr: np.ndarray) -> bytes:
    raw = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape) + \
        arr.astype(np.uint8).tobytes()
    return gzip.compress(raw, mtime=0)


def _mnist_like() -> dict[str, bytes]:
    x, y = digits_arrays(400)
    return {"train-images-idx3-ubyte.gz": _idx_gz(x[:300]),
            "train-labels-idx1-ubyte.gz": _idx_gz(y[:300]),
            "t10k-images-idx3-ubyte.gz": _idx_gz(x[300:]),
            "t10k-labels-idx1-ubyte.gz": _idx_gz(y[300:])}


def _hymenoptera_zip() -> bytes:
    x, y = pattern_images(8, size=16, classes=2)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, (img, lab) in enumerate(zip(x, y, strict=True)):
            part = "val" if i % 4 == 0 else "train"
            png = io.BytesIO()
            Image.fromarray(img).save(png, format="PNG")
            z.writestr(f"hymenoptera_data/{part}/{('ants', 'bees')[lab]}/{i}.png", png.getvalue())
    return buf.getvalue()


def _cifar_tar() -> bytes:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(20, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(20)]
    members = {"data_batch_1": {b"data": data, b"labels": labels},
               "test_batch": {b"data": data[:10], b"labels": labels[:10]},
               "batches.meta": {b"label_names": [f"c{i}".encode() for i in range(10)]}}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for name, obj in members.items():
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            t.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def _register(monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes],
              sha: dict[str, str] | None = None) -> None:
    """Point the real entry `name` at fixture files (same unpacking, fixture checksums)."""
    real = fetch.DATASETS[name]
    remotes = tuple(fetch.Remote(n, (sha or {}).get(n, _sha(b)), len(b)) for n, b in files.items())
    monkeypatch.setitem(fetch.DATASETS, name, fetch.Dataset(real.name, real.description,
                                                            real.bases, remotes, real.unpack,
                                                            real.top, "fixture"))


@pytest.mark.parametrize("name", ["mnist", "hymenoptera", "cifar10"])
def test_fetch_unpacks_into_a_layout_cnnlab_trains_on(
        name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    files = {"mnist": _mnist_like, "hymenoptera": lambda: {"hymenoptera_data.zip":
                                                           _hymenoptera_zip()},
             "cifar10": lambda: {"cifar-10-python.tar.gz": _cifar_tar()}}[name]()
    server = Server({f"/{name}/{n}": b for n, b in files.items()})
    monkeypatch.setenv(fetch.MIRROR_ENV, server.url)
    _register(monkeypatch, name, files)
    from cnnlab.cli import main

    main(["data", "fetch", name])
    path = Path(capsys.readouterr().out.strip())  # stdout is only the folder to train on
    assert path == fetch.datasets_root() / name and path.is_dir()
    splits = load_data(path)
    if name == "mnist":
        assert len(splits.test) == 100 and splits.train.classes == [str(i) for i in range(10)]
    elif name == "hymenoptera":
        assert splits.train.classes == ["ants", "bees"] and len(splits.val) == 4
    else:
        assert splits.train.classes[:2] == ["c0", "c1"] and len(splits.test) == 10
    # A second fetch finds it there and downloads nothing.
    before = len(server.log)
    main(["data", "fetch", name])
    assert Path(capsys.readouterr().out.strip()) == path and len(server.log) == before
    main(["data", "list"])
    row = next(ln for ln in capsys.readouterr().out.splitlines() if f" {name} " in ln)
    assert "fetched" in row


def test_checksum_mismatch_is_refused_and_the_download_removed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    files = _mnist_like()
    server = Server({f"/mnist/{n}": b for n, b in files.items()})
    monkeypatch.setenv(fetch.MIRROR_ENV, server.url)
    _register(monkeypatch, "mnist", files, sha={"t10k-images-idx3-ubyte.gz": "0" * 64})
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz .* has SHA-256 .*expected 0+;"):
        fetch.fetch("mnist")
    down = fetch.downloads_dir("mnist")
    assert not (down / "t10k-images-idx3-ubyte.gz.part").exists()
    assert not (down / "t10k-images-idx3-ubyte.gz").exists()
    assert not fetch.dataset_dir("mnist").exists()  # nothing that looks finished
    assert fetch.status("mnist") == "partial"  # the good files stay and are not fetched again


@pytest.mark.parametrize("ranges", [True, False])
def test_a_truncated_download_resumes(ranges: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _cifar_tar()
    path = "/cifar10/cifar-10-python.tar.gz"
    server = Server({path: blob}, ranges=ranges)
    monkeypatch.setenv(fetch.MIRROR_ENV, server.url)
    _register(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": blob})
    down = fetch.downloads_dir("cifar10")
    down.mkdir(parents=True)
    half = len(blob) // 2
    (down / "cifar-10-python.tar.gz.part").write_bytes(blob[:half])  # an interrupted run
    out = fetch.fetch("cifar10")
    assert server.log == [(path, f"bytes={half}-")]
    # With Range the server sends only the rest; without it the file is restarted, not doubled.
    assert server.sent(path) == (len(blob) - half if ranges else len(blob))
    assert (out / "data_batch_1").is_file()
    assert not any(down.iterdir())  # archive removed once unpacked; no partial left


def test_offline_is_one_line_saying_where_to_put_the_file(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cache = tmp_path / "cache"
    res = run_cli("data", "fetch", "fashion-mnist",
                  env={fetch.MIRROR_ENV: f"http://127.0.0.1:{port}", "CNNLAB_CACHE": str(cache)})
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    want = cache / "datasets" / "downloads" / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    assert len(lines) == 1 and "cannot download" in lines[0], res.stderr
    assert f"put it at {want}" in lines[0] and "cnnlab data fetch fashion-mnist" in lines[0]
    # a mirror with credentials: the message names it without its secret
    res = run_cli("data", "fetch", "fashion-mnist", env={
        fetch.MIRROR_ENV: f"http://me:s3cret@127.0.0.1:{port}/?token=t0ken",
        "CNNLAB_CACHE": str(cache)})
    assert res.returncode == 2 and "cannot download" in res.stderr, res.stderr
    assert "s3cret" not in res.stderr and "t0ken" not in res.stderr and "***" in res.stderr


def test_a_file_put_there_by_hand_is_checked_and_used(monkeypatch: pytest.MonkeyPatch) -> None:
    files = _mnist_like()
    _register(monkeypatch, "mnist", files)
    monkeypatch.setenv(fetch.MIRROR_ENV, "http://127.0.0.1:9")  # nothing to download from
    down = fetch.downloads_dir("mnist")
    down.mkdir(parents=True)
    for n, b in files.items():
        (down / n).write_bytes(b)
    assert len(load_data(fetch.fetch("mnist")).test) == 100
    (down / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not it")
    with pytest.raises(DataError, match="is not the expected"):
        fetch.fetch("mnist", force=True)
    assert not (down / "t10k-labels-idx1-ubyte.gz").exists()


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(DataError, match="choose one of hymenoptera, mnist, mnist10k, kmnist"):
        fetch.lookup("imagenet")
    assert fetch.lookup("Fashion_MNIST").name == "fashion-mnist"


def _error_line(err: str) -> str:
    """The one `error:` line of a failed command (notes about resuming may come before it)."""
    errors = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and err.strip().endswith(errors[0]), err
    return errors[0]


def _cifar_served(monkeypatch: pytest.MonkeyPatch, blob: bytes, **faults: object
                  ) -> tuple[Server, str]:
    """A fixture cifar10 (one file, known size) behind a Server with `faults`."""
    path = "/cifar10/cifar-10-python.tar.gz"
    server = Server({path: blob}, **faults)
    monkeypatch.setenv(fetch.MIRROR_ENV, server.url)
    monkeypatch.setattr(fetch, "RESUME_WAIT_S", 0.0, raising=False)
    _register(monkeypatch, "cifar10", {"cifar-10-python.tar.gz": blob})
    return server, path


def test_a_dropped_connection_resumes_with_range_in_the_same_command(
        monkeypatch: pytest.MonkeyPatch, cli) -> None:
    files = _mnist_like()
    name = "train-images-idx3-ubyte.gz"
    cut = len(files[name]) // 3
    server = Server({f"/mnist/{n}": b for n, b in files.items()}, drops={f"/mnist/{name}": [cut]})
    monkeypatch.setenv(fetch.MIRROR_ENV, server.url)
    monkeypatch.setattr(fetch, "RESUME_WAIT_S", 0.0, raising=False)
    _register(monkeypatch, "mnist", files)
    code, out, err = cli("data", "fetch", "mnist")
    assert code == 0, err
    asked = [rng for p, rng in server.log if p == f"/mnist/{name}"]
    assert asked == [None, f"bytes={cut}-"]  # resumed where it stopped, not from byte 0
    notes = [ln for ln in err.splitlines() if "resuming" in ln]
    assert len(notes) == 1 and f"after {cut} of {len(files[name])} bytes" in notes[0], err
    assert _sha((Path(out.strip()) / name).read_bytes()) == _sha(files[name])
    assert len(load_data(Path(out.strip())).test) == 100


@pytest.mark.parametrize("announced", [True, False])
def test_a_body_longer_than_the_known_size_is_refused(
        announced: bool, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    blob = _cifar_tar()
    server, path = _cifar_served(monkeypatch, blob, extra=b"x" * 100_000, length=announced)
    code, out, err = cli("data", "fetch", "cifar10")
    line = _error_line(err)
    assert code == 2 and out == ""
    assert f"{server.url}{path} sends more than the {len(blob)} bytes" in line
    down = fetch.downloads_dir("cifar10")
    sizes = [p.stat().st_size for p in down.rglob("*") if p.is_file()]
    assert all(n <= len(blob) for n in sizes), sizes  # nothing past the known size stays
    assert not fetch.dataset_dir("cifar10").exists()


@pytest.mark.parametrize("length", [True, False])
def test_a_short_body_is_kept_and_the_next_run_resumes_it(
        length: bool, monkeypatch: pytest.MonkeyPatch, cli) -> None:
    blob = _cifar_tar()
    step = len(blob) // 8
    monkeypatch.setattr(fetch, "RESUMES", 2, raising=False)
    tries = 3  # the first answer and two resumes
    server, path = _cifar_served(monkeypatch, blob, drops={}, length=length)
    server.drops[path] = [step] * tries  # every answer of this run ends early
    code, _, err = cli("data", "fetch", "cifar10")
    line = _error_line(err)
    assert code == 2
    assert f"connection closed after {tries * step} of {len(blob)} bytes" in line
    assert "again to resume" in line
    part = fetch.downloads_dir("cifar10") / "cifar-10-python.tar.gz.part"
    assert part.read_bytes() == blob[:tries * step]  # kept, not deleted for its hash
    assert [rng for _, rng in server.log] == [None] + [f"bytes={i * step}-"
                                                       for i in range(1, tries)]
    code, out, err = cli("data", "fetch", "cifar10")  # the next run, the link now fine
    assert code == 0, err
    assert server.log[-1] == (path, f"bytes={tries * step}-")
    assert server.sent(path) - sum(len(blob) - i * step for i in range(tries)) == \
        len(blob) - tries * step  # the last answer sent only the rest
    assert (Path(out.strip()) / "data_batch_1").is_file()


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest):
    """A cache folder whose writes fail past 64 KB: a real 64 KB tmpfs (ENOSPC) where we may
    mount one (root), else the kernel's file size limit (EFBIG) on this process."""
    import resource

    cache = tmp_path / "small"
    cache.mkdir()
    if request.param == "tmpfs":
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(cache)],
                             capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({res.stderr.strip()[:80]}); fsize covers it")
        try:
            yield cache, "No space left on device"
        finally:
            subprocess.run(["umount", "-l", str(cache)], capture_output=True)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, hard))  # Python ignores SIGXFSZ
    try:
        yield cache, "File too large"
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@pytest.mark.parametrize("small_disk", ["tmpfs", "fsize"], indirect=True)
def test_a_full_cache_disk_is_named_as_the_disk_not_the_network(
        small_disk: tuple[Path, str], monkeypatch: pytest.MonkeyPatch, cli) -> None:
    cache, reason = small_disk
    monkeypatch.setenv("CNNLAB_CACHE", str(cache))
    _cifar_served(monkeypatch, os.urandom(300_000))
    code, _, err = cli("data", "fetch", "cifar10")
    line = _error_line(err)
    assert code == 2
    assert f"cannot write to {cache}" in line and reason in line
    assert "CNNLAB_CACHE" in line and "cannot download" not in line


def test_mnist10k_is_mnists_test_digits_in_cs475_npy_layout(tmp_path, monkeypatch):
    """`cnnlab data fetch mnist10k`: MNIST's t10k files split 60/20/20 in file order into the
    .npy files the docs' commands train on."""
    files = {k: v for k, v in _mnist_like().items() if k.startswith("t10k")}
    server = Server({f"/mnist10k/{k}": v for k, v in files.items()})
    monkeypatch.setenv(fetch.MIRROR_ENV, server.url)
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    _register(monkeypatch, "mnist10k", files)
    folder = fetch.fetch("mnist10k")
    x, y = digits_arrays(400)
    x, y = x[300:], y[300:]  # the "t10k" part of the fixture: 100 images
    got = {p.name: np.load(p) for p in folder.glob("*.npy")}
    assert sorted(got) == sorted(f"mnist_{s}{k}.npy" for s in ("", "dev_", "test_")
                                 for k in ("images", "labels"))
    assert (got["mnist_images.npy"] == x[:60]).all() and (got["mnist_labels.npy"] == y[:60]).all()
    assert (got["mnist_dev_images.npy"] == x[60:80]).all()
    assert (got["mnist_test_labels.npy"] == y[80:]).all()
    splits = load_data(str(folder))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (60, 20, 20)
