"""A tracker never blocks or kills a run: a read-only runs folder or SQLite store and an
unreachable tracking server each cost one warning line and a few seconds, never the run and never
minutes; the members of an experiment reuse the verdict instead of waiting again.

Read-only here means read-only for root too. The tests may run as root, and root ignores the
mode bits (CAP_DAC_OVERRIDE: after chmod 0o555 root still creates files there), so as root the
folder is made read-only by a read-only bind mount (writes fail with EROFS) or, where mounting
is not allowed, the immutable attribute (chattr +i: EPERM). The fixture checks that a write
really fails before a test relies on it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import missing_component

import cnnlab

pytest.importorskip("mlflow", reason="pip install -e '.[track]'")

TINY = {"model": "mlp", "model_args": {"hidden": 16}, "epochs": 1, "batch_size": 64,
        "num_threads": 1, "device": "cpu", "verbose": False, "report": False}
FAST = 30.0  # seconds: a guard against the minutes-long stalls, not a benchmark


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def _run(*cmd: str) -> bool:
    try:
        return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


def _freeze(folder: Path, undo: list[Callable[[], object]]) -> None:
    """Make `folder` read-only for whoever runs the tests (root included)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        undo.append(lambda: folder.chmod(0o755))
    elif _run("mount", "--bind", str(folder), str(folder)):
        undo.append(lambda: _run("umount", str(folder)))
        _run("mount", "-o", "remount,ro,bind", str(folder))  # only ever on our own bind mount
    if _writable(folder) and os.geteuid() == 0 and _run("chattr", "-R", "+i", str(folder)):
        undo.append(lambda: _run("chattr", "-R", "-i", str(folder)))


@pytest.fixture
def readonly(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """freeze(folder): the folder, with what it holds, made read-only until the test ends."""
    undo: list[Callable[[], object]] = []

    def freeze(folder: Path) -> Path:
        _freeze(folder, undo)
        if _writable(folder):
            missing_component("a read-only folder", "root here can neither mount nor chattr")
        return folder

    yield freeze
    for fn in reversed(undo):
        fn()


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if "--track mlflow" in line]


def test_a_runs_folder_that_cannot_be_made_costs_the_tracker_not_the_run(
        tmp_path: Path, readonly: Callable[[Path], Path], capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "ro").mkdir()
    ro = readonly(tmp_path / "ro")
    res = cnnlab.train(**TINY, track="mlflow", runs_dir=str(ro / "runs"),
                       out=str(tmp_path / "run"))
    err = capsys.readouterr().err
    (line,) = _warnings(err)
    assert "is off: cannot create" in line and "goes on" in line, err
    assert (res.run_dir / "best.pt").is_file() and len(res.history) == 1
    assert any("--track mlflow is off" in n for n in res.metrics["notes"])
    assert not (ro / "runs").exists()


def test_a_read_only_sqlite_store_is_one_warning_in_seconds_not_a_retry_storm(
        tmp_path: Path, readonly: Callable[[Path], Path], capfd: pytest.CaptureFixture) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    readonly(runs)  # the store's folder exists, on read-only media: mlflow.db cannot be made
    t0 = time.perf_counter()
    res = cnnlab.train(**TINY, track="mlflow", runs_dir=str(runs), out=str(tmp_path / "run"))
    elapsed = time.perf_counter() - t0
    err = capfd.readouterr().err
    (line,) = _warnings(err)
    assert "read-only" in line, err
    assert "retried" not in err  # MLflow's own loop: 12 tries, 36 lines, about 100 s
    assert elapsed < FAST, elapsed
    assert (res.run_dir / "metrics.json").is_file()


class SilentServer:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung server)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.connections.append(self.sock.accept()[0])  # held open, never answered

    def close(self) -> None:
        self.sock.close()
        for c in self.connections:
            c.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_tracking_server_is_one_warning_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from cnnlab.train import loggers

    uri = f"http://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    res = cnnlab.train(**TINY, track="mlflow", track_uri=uri, out=str(tmp_path / "run"))
    elapsed = time.perf_counter() - t0
    (line,) = _warnings(capsys.readouterr().err)
    assert "is off: cannot connect to http://127.0.0.1:" in line
    assert elapsed < FAST, elapsed  # MLflow alone: 7 retries with back-off, about 250 s
    assert (res.run_dir / "best.pt").is_file()
    # the next run of this process reuses the verdict: not said again, but recorded
    res = cnnlab.train(**TINY, track="mlflow", track_uri=uri, out=str(tmp_path / "run2"))
    assert _warnings(capsys.readouterr().err) == []
    assert any("cannot connect" in n for n in res.metrics["notes"])
    # an old verdict is not trusted: the server is asked (and the warning shown) again
    monkeypatch.setattr(loggers, "VERDICT_SECONDS", 0.0)
    cnnlab.train(**TINY, track="mlflow", track_uri=uri, out=str(tmp_path / "run3"))
    assert len(_warnings(capsys.readouterr().err)) == 1


@pytest.mark.slow  # the probe waits its 5 s for an answer that never comes
def test_a_hung_tracking_server_costs_one_probe_for_the_whole_sweep(
        tmp_path: Path, silent_server: SilentServer, capsys: pytest.CaptureFixture) -> None:
    from cnnlab.experiments import run_sweep
    from cnnlab.settings import resolve

    base = resolve({k: v for k, v in TINY.items() if k != "verbose"} | {
        "track": "mlflow", "track_uri": f"http://127.0.0.1:{silent_server.port}"})
    t0 = time.perf_counter()
    res = run_sweep(base, {"lr": [1e-3, 1e-2, 3e-2]}, out=tmp_path / "sweep", verbose=False)
    elapsed = time.perf_counter() - t0
    (line,) = _warnings(capsys.readouterr().err)  # one line for three members
    assert "did not answer within 5 s" in line, line
    assert len(silent_server.connections) == 1  # the first member's probe; the others reuse it
    assert elapsed < FAST, elapsed  # MLflow alone: 120 s per try, 8 tries, in every member
    members = sorted((tmp_path / "sweep" / "members").iterdir())
    assert len(members) == 3 and all((m / "best.pt").is_file() for m in members)
    assert len(res.rows) == 3
