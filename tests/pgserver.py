"""A throwaway PostgreSQL server for tests: initdb in a temp folder, pg_ctl on a free port.

    with pg_server() as url:      # postgresql+psycopg2://cnnlab@127.0.0.1:PORT/postgres
        ...

The server binaries come from PATH or Debian's /usr/lib/postgresql/<version>/bin (package
`postgresql`). initdb refuses to run as root, so as root the server runs as the `postgres` user
(created by the Debian package). Without a server the tests skip; under CI=true they fail, so a
CI machine that lost its PostgreSQL cannot pass silently.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def find_binary(name: str) -> str | None:
    """initdb/pg_ctl from PATH, else the newest Debian postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI=true (the one rule of conftest.missing_component)."""
    from conftest import missing_component

    missing_component("PostgreSQL test server", f"{reason}; Debian: apt-get install postgresql")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_user() -> tuple[list[str], str | None]:
    """(command prefix, owner) for running the server: ourselves, or postgres when root."""
    if os.geteuid() != 0:
        return [], None
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no 'postgres' user to run initdb as")
    runner = shutil.which("runuser") or shutil.which("su")
    if runner is None:
        unavailable("running as root without runuser/su to start the server as postgres")
    if runner.endswith("runuser"):
        return [runner, "-u", "postgres", "--"], "postgres"
    return [runner, "postgres", "-s", "/bin/sh", "-c", '"$0" "$@"'], "postgres"


@contextlib.contextmanager
def pg_server() -> Iterator[str]:
    """Start a private PostgreSQL server; yield its SQLAlchemy URL; stop and delete it."""
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if not initdb or not pg_ctl:
        unavailable("initdb/pg_ctl not found")
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        unavailable("psycopg2 is not installed (pip install -e '.[test]')")
    prefix, owner = _as_user()
    root = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))
    data, log = root / "data", root / "server.log"
    if owner:
        shutil.chown(root, owner)
        root.chmod(0o700)
    port = _free_port()
    started = False
    try:
        subprocess.run([*prefix, initdb, "-D", str(data), "-U", "cnnlab", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        r = subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60",
                            "-o", opts, "start"], capture_output=True, text=True, timeout=90)
        if r.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()} {text[-2000:]}")
        started = True
        yield f"postgresql+psycopg2://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
