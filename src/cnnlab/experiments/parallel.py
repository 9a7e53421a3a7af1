"""Experiment members in parallel processes (`--jobs N` of sweep, cv and seeds).

A small CNN cannot fill a many-core machine, so N members train at once, each a normal
run_member/run_training in its own spawned process on its own share of the CPUs. Each member's
result depends only on its settings (seeded, and with --deterministic bit-reproducible), so
the experiment's results are the same as sequential ones when the thread count per member is
the same. --deterministic without --num-threads therefore keeps the sequential thread count
(all cores) in every process; with --num-threads (e.g. 1) the cores are simply split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cnnlab.console import console
from cnnlab.errors import CnnlabError
from cnnlab.experiments.common import ExperimentInterrupted, Member, run_member


def cpu_shares(workers: int) -> list[list[int]]:
    """The CPUs of each of `workers` processes: this process's CPUs in equal disjoint sets
    (empty lists, meaning 'no pinning', when there are fewer CPUs than workers)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return [[] for _ in range(workers)]
    if len(cpus) < workers:
        return [[] for _ in range(workers)]
    k = len(cpus) // workers
    return [cpus[i * k:(i + 1) * k] for i in range(workers)]


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
    from concurrent.futures import ProcessPoolExecutor, as_completed

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
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for share in shares:
        queue.put(share)
    done = total - len(todo)
    try:
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_pin,
                                 initargs=(queue,)) as pool:
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
