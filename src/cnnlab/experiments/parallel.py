"""Experiment members in parallel processes (`--jobs N` of sweep, cv and seeds).

A small CNN cannot fill a many-core machine, so N members train at once, each a normal
run_member/run_training in its own spawned process on its own share of the CPUs. Each member's
result depends only on its settings (seeded, and with --deterministic bit-reproducible), so
the experiment's results are the same as sequential ones when the thread count per member is
the same. --deterministic without --num-threads therefore keeps the sequential thread count
(all cores) in every process; with --num-threads (e.g. 1) the cores are simply split.

The processes never outlive this one: each asks the kernel for SIGKILL when its parent dies
(Linux) and watches the parent's pid besides, so killing the command (SIGKILL, SIGTERM) ends
its workers at once instead of leaving orphans that train on and write into the folder. Ctrl-C
is the parent's to handle: it passes it on to every worker (each saves its checkpoint, as a
sequential member would), waits a few seconds for them, then kills what is left. A command
started with Ctrl-C ignored (`nohup`, `cmd &` in a script) keeps it ignored in every worker, as
a sequential run does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cnnlab.console import console
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import ExperimentInterrupted, Member, run_member


def cpu_shares(workers: int) -> list[list[int]]:
    """The CPUs of each of `workers` processes: this process's CPUs in equal disjoint sets
    (empty lists, meaning 'no pinning', when there are fewer CPUs than workers)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    cpus = sorted(affinity(0)) if affinity is not None else []
    if len(cpus) < workers:
        return [[] for _ in range(workers)]
    k = len(cpus) // workers
    return [cpus[i * k:(i + 1) * k] for i in range(workers)]


# How long workers get to save their checkpoints after Ctrl-C before they are killed.
STOP_GRACE_S = 15.0
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _kill_on_parent_death() -> bool:
    """Ask Linux to SIGKILL this process when its parent dies; False where that is not
    available (other systems, no libc)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, every: float = 0.5) -> None:
    """Daemon thread: end this process without a word once `parent` is gone (re-parented)."""
    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


# Whether Ctrl-C may stop this worker's task: False where the parent ignores it (set at start).
_CTRL_C = [True]


def follow_parent(parent: int, ctrl_c: bool = True) -> None:
    """In a worker process: die with `parent`, and leave Ctrl-C to it.

    A terminal's Ctrl-C reaches every process of the group; outside a training loop (which
    turns it into a checkpoint and a clean stop) a worker ignores it instead of printing a
    KeyboardInterrupt traceback, and the parent decides what happens. `ctrl_c` False: the
    parent ignores Ctrl-C, so the worker's tasks ignore it too.
    """
    _CTRL_C[0] = ctrl_c
    _kill_on_parent_death()
    # The kernel's signal and the watcher both miss a parent that died before this line.
    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="cnnlab-watch-parent").start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Around a worker's task: Ctrl-C stops it (a training loop saves its checkpoint first)
    and goes back to the parent as the task's exception; between tasks it is ignored, and
    throughout where the parent ignores it."""
    if not _CTRL_C[0]:
        yield
        return
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _quiet_tracker() -> None:
    """Start multiprocessing's resource tracker without its warning about the semaphores of a
    parent killed by SIGKILL: it removes them either way, the warning only alarms."""
    from multiprocessing import resource_tracker

    sys.warnoptions.append("ignore:resource_tracker:UserWarning")
    try:
        resource_tracker.ensure_running()
    finally:
        sys.warnoptions.pop()


def _worker_init(parent: int, ctrl_c: bool, init: Callable[..., None] | None,
                 args: tuple) -> None:
    """Pool initializer: follow the parent, then the pool's own initializer."""
    follow_parent(parent, ctrl_c)
    if init is not None:
        init(*args)


def _stop_workers(pool: Any, grace: float = STOP_GRACE_S) -> None:
    """Ctrl-C in the parent: no new tasks; Ctrl-C to each worker (a training one saves its
    checkpoint and stops); after `grace` seconds, or a second Ctrl-C, SIGKILL the rest."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)  # idle workers exit after their task
    for p in procs:
        with contextlib.suppress(OSError, ValueError):
            os.kill(p.pid, signal.SIGINT)
    deadline = time.monotonic() + grace
    try:
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: do not wait for checkpoints
    for p in procs:
        if p.is_alive():
            with contextlib.suppress(OSError, ValueError):
                p.kill()
            p.join(5)


@contextlib.contextmanager
def worker_pool(n: int, initializer: Callable[..., None] | None = None,
                initargs: tuple = ()) -> Iterator[Any]:
    """A ProcessPoolExecutor of `n` spawned processes that die with this one and stop with it
    on Ctrl-C (see the module docstring)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from cnnlab.train.trainer import ctrl_c_honoured

    _quiet_tracker()
    pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init,
                               initargs=(os.getpid(), ctrl_c_honoured(), initializer,
                                         initargs))
    try:
        yield pool
    except KeyboardInterrupt:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _pin(shares: object) -> None:
    """Pool initializer: this process takes one share of the CPUs for all its members."""
    cpus = shares.get()  # type: ignore[attr-defined]
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
    _PINNED[:] = cpus


_PINNED: list[int] = []


def _member_entry(member: Member, folder: Path) -> tuple:
    """Process entry point: train one member; what the parent needs back."""
    if member.cfg.num_threads is None:
        member.cfg.num_threads = max(1, len(_PINNED))
    with interruptible():
        run_member(member, folder, verbose=False)
    return member.run_dir, member.metrics, member.history, member.trained


def run_members(members: Sequence[Member], folder: Path, verbose: bool = True,
                jobs: int = 1) -> list[Member]:
    """Train every unfinished member, `jobs` at a time (1: one after another, in this process)."""
    if jobs < 1:
        raise CnnlabError("--jobs must be at least 1")
    total = len(members)
    todo = [m for m in members if not (folder / "members" / m.name / "metrics.json").is_file()]
    if jobs == 1 or len(todo) <= 1:
        for i, m in enumerate(members, 1):
            run_member(m, folder, verbose, i, total)
        return list(members)
    for i, m in enumerate(members, 1):  # finished before: just read
        if m not in todo:
            run_member(m, folder, verbose, i, total)
    import multiprocessing
    from concurrent.futures import as_completed

    _quiet_tracker()  # before the queue below starts it
    n = min(jobs, len(todo))
    shares = cpu_shares(n)
    exact = [m for m in todo if m.cfg.deterministic and m.cfg.num_threads is None]
    if exact:
        # Bit-identical to sequential members means the same thread count as they use (all
        # cores): float sums split over other thread counts differ in the last bits.
        shares = [[] for _ in range(n)]
        for m in exact:
            m.cfg.num_threads = len(cpu_shares(1)[0]) or (os.cpu_count() or 1)
        if verbose:
            console.print(f"[yellow]--deterministic without --num-threads: each of the {n} "
                          f"processes uses {exact[0].cfg.num_threads} threads, as a sequential "
                          "member would, so results match; --num-threads 1 is faster[/]")
    if verbose:
        console.print(f"training {len(todo)} members in {n} processes "
                      f"({len(shares[0]) or 'shared'} CPU(s) each)")
    queue = multiprocessing.get_context("spawn").Queue()
    for share in shares:
        queue.put(share)
    done = total - len(todo)
    try:
        with worker_pool(n, _pin, (queue,)) as pool:
            futures = {pool.submit(_member_entry, m, folder): m for m in todo}
            for f in as_completed(futures):
                m = futures[f]
                m.run_dir, m.metrics, m.history, m.trained = f.result()
                done += 1
                if verbose:
                    acc = (m.metrics.get("val") or m.metrics.get("test") or {}).get("accuracy")
                    console.print(f"[{done}/{total}] {m.name}: done"
                                  + (f" (acc {acc:.4f})" if acc is not None else ""))
    except KeyboardInterrupt:
        raise ExperimentInterrupted(
            "interrupted; finished members are kept. Run the same command again to continue"
        ) from None
    return list(members)
