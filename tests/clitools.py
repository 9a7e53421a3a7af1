"""Helpers for the reliability tests: real `cnnlab` processes, started cheaply.

Every helper starts real operating-system processes running the real CLI entry point
(`cnnlab.cli.main`, the function behind the `cnnlab` console script) and looks only at what a
user sees: the exit status, stdout, stderr and the files written.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

_cpus = itertools.cycle(sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                        else [0])


def one_cpu() -> Callable[[], None] | None:
    """A preexec_fn pinning the child to one CPU (round robin over the CPUs we may use).

    cnnlab uses one intra-op thread per CPU of its affinity mask; on a 2-core machine shared
    with other jobs two spinning OpenMP threads make tiny runs ten times slower. One CPU keeps
    the kill/resume tests fast and their timing predictable (and bit-exactness still holds:
    reference and resumed runs use the same thread count).
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = next(_cpus)

    def pin() -> None:
        os.sched_setaffinity(0, {cpu})
    return pin


def cli_env(**extra: str) -> dict:
    """The environment for cnnlab subprocesses (the test's own decode cache stays in effect)."""
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1", **extra}


def cli_cmd(*args: str | os.PathLike) -> list:
    """The argv of a real `cnnlab` process."""
    return [sys.executable, "-m", "cnnlab", *map(os.fspath, args)]


def popen_cli(*args: str | os.PathLike, cwd: Path | None = None,
              preexec: Callable[[], None] | None = None, **env: str) -> subprocess.Popen:
    """Start `cnnlab ARGS` without waiting (stdout/stderr captured as text), with Ctrl-C
    working as in a terminal whatever started the tests (a suite run as `make test &` from a
    script inherits SIGINT ignored, and every command would too)."""
    pin = one_cpu()

    def pre() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if pin:
            pin()
        if preexec:
            preexec()
    return subprocess.Popen(cli_cmd(*args), cwd=cwd, env=cli_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pre)


def run_cli(*args: str | os.PathLike, cwd: Path | None = None, timeout: float = 240,
            preexec: Callable[[], None] | None = None, **env: str) -> subprocess.CompletedProcess:
    """Run `cnnlab ARGS` to completion in its own process."""
    proc = popen_cli(*args, cwd=cwd, preexec=preexec, **env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# A "zygote": one interpreter imports cnnlab once, then forks one child process per command.
# Each child runs the CLI entry point with its own stdout/stderr files and exits with the
# status the `cnnlab` command would have; signals sent to it are real signals to a real
# process. The zygote never runs a torch op itself, so forking it is safe. This saves the
# 3-10 s interpreter + torch + scikit-learn import per command (on a loaded 2-core machine)
# that would otherwise dominate tests that start dozens of commands.
_ZYGOTE = r"""
import json, os, signal, sys, traceback
import cnnlab.cli
# What every training process imports lazily anyway (optimizers import torch._dynamo, the
# final report imports matplotlib): import it once here, before any fork.
import torch._dynamo, matplotlib.pyplot, sklearn.metrics  # noqa: E401
for line in sys.stdin:
    cmd = json.loads(line)
    if "wait" in cmd:
        _, status = os.waitpid(cmd["wait"], 0)
        print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
        continue
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(cmd["cwd"])
            for fd, path in ((1, cmd["out"]), (2, cmd["err"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(f, fd)
                os.close(f)
            for k, v in cmd.get("env", {}).items():
                os.environ[k] = v
            # Ctrl-C as in a terminal (or ignored, as under nohup), whatever the zygote inherited
            signal.signal(signal.SIGINT, signal.SIG_IGN if cmd.get("ignore_sigint")
                          else signal.default_int_handler)
            if cmd.get("umask") is not None:
                os.umask(cmd["umask"])
            import resource
            if cmd.get("fsize") is not None:  # writes past this size fail with EFBIG
                resource.setrlimit(resource.RLIMIT_FSIZE, (cmd["fsize"], cmd["fsize"]))
            if cmd.get("as_extra") is not None:  # address space: what is mapped now + extra
                with open("/proc/self/status") as fh:
                    kb = next(int(ln.split()[1]) for ln in fh if ln.startswith("VmSize:"))
                limit = kb * 1024 + cmd["as_extra"]
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            try:
                cnnlab.cli.main(cmd["argv"])
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()  # what Python prints for an uncaught exception
                code = 1
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
"""


class Child:
    """One forked `cnnlab` process."""

    def __init__(self, zygote: Zygote, pid: int, out: Path, err: Path) -> None:
        self.zygote, self.pid, self.out, self.err = zygote, pid, out, err
        self.returncode: int | None = None

    def alive(self) -> bool:
        """Running (not exited, not a zombie)."""
        if self.returncode is not None:
            return False
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")

    def signal(self, sig: int) -> None:
        """Send a real signal to the process."""
        os.kill(self.pid, sig)

    def wait(self) -> subprocess.CompletedProcess:
        """Reap it: (returncode, stdout, stderr); -9 means killed by SIGKILL."""
        if self.returncode is None:
            self.returncode = self.zygote._ask({"wait": self.pid})["rc"]
        # a child killed right after the fork may not have created its output files yet
        out, err = (p.read_text(errors="replace") if p.exists() else "" for p in (self.out,
                                                                                 self.err))
        return subprocess.CompletedProcess(self.pid, self.returncode, out, err)


class Zygote:
    """Starts `cnnlab` commands as children forked from one pre-imported interpreter."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        logdir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=cli_env(),
                                     preexec_fn=one_cpu())

    def _ask(self, msg: dict) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "the zygote process died"
        return json.loads(line)

    def start(self, *args: str | os.PathLike, cwd: Path | None = None,
              env: dict | None = None, fsize: int | None = None,
              as_extra: int | None = None, umask: int | None = None,
              ignore_sigint: bool = False) -> Child:
        """Fork a child running `cnnlab ARGS`.

        `fsize`: RLIMIT_FSIZE in bytes (larger writes fail with EFBIG, a real kernel error;
        Python ignores SIGXFSZ). `as_extra`: RLIMIT_AS set to the child's current address
        space plus this many bytes (larger allocations fail). `umask`: the caller's umask.
        `ignore_sigint`: started with Ctrl-C ignored, as by `nohup` or `cmd &` in a script.
        """
        self.count += 1
        out, err = self.logdir / f"{self.count}.out", self.logdir / f"{self.count}.err"
        if "CNNLAB_CACHE" in os.environ:  # each test's own decode cache (conftest)
            env = {"CNNLAB_CACHE": os.environ["CNNLAB_CACHE"], **(env or {})}
        pid = self._ask({"argv": [os.fsdecode(a) for a in args],
                         "cwd": os.fspath(cwd or Path.cwd()), "out": os.fspath(out),
                         "err": os.fspath(err), "env": env or {}, "fsize": fsize,
                         "as_extra": as_extra, "umask": umask,
                         "ignore_sigint": ignore_sigint})["pid"]
        return Child(self, pid, out, err)

    def run(self, *args: str | os.PathLike, cwd: Path | None = None, env: dict | None = None,
            **limits: int) -> subprocess.CompletedProcess:
        """Run `cnnlab ARGS` in a child and wait for it."""
        return self.start(*args, cwd=cwd, env=env, **limits).wait()

    def close(self) -> None:
        """End the zygote (its children are already reaped)."""
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout:  # else the suite ends with "ResourceWarning: unclosed file"
            self.proc.stdout.close()


def assert_one_line_error(res: subprocess.CompletedProcess, *needles: str,
                          after_progress: bool = False) -> str:
    """Exit code 2, no traceback, one `error:` line on stderr containing every needle.

    Without `after_progress` that line must be all of stderr; with it (the error came after
    training started) the progress lines before it are allowed but it must be the last line.
    """
    err = res.stderr
    assert "Traceback" not in err, err
    assert res.returncode == 2, (res.returncode, err, res.stdout[-500:])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    if not after_progress:
        assert len(lines) == 1, err
    for n in needles:
        assert n.lower() in errors[0].lower(), (n, errors[0])
    return errors[0]


_shared: Zygote | None = None


def shared_zygote() -> Zygote:
    """One zygote for the whole test session (its import cost is paid once), closed at exit."""
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        import atexit
        import tempfile

        _shared = Zygote(Path(tempfile.mkdtemp(prefix="cnnlab-zygote-")))
        atexit.register(_shared.close)
    return _shared
