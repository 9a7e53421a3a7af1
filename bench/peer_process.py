"""A peer's fit() in a process of its own, driven one epoch at a time over stdin/stdout.

The peers used to run their blocking fit() in threads of the benchmark process. Once those
threads existed, every other variant's epochs ran 40-50% slower while the peers' own did not
(measured 2026-12-01, case (a): cnnlab 8.7 s -> 12.9 s, model-only bf16 8.2 s -> 11.9 s per
epoch, Lightning 21.1 s -> 19.5 s), which measured the thread set-up rather than the loops.
In its own process a peer waits on a pipe between epochs and costs the others nothing.

    parent -> child: "epoch" | "acc" | "finish"      child -> parent: one JSON line each
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO

from bench.cases import ROOT, WORK, Case
from bench.harness import Variant


class ProcessPeer(Variant):
    """LightningPeer or SkorchPeer (bench/peers.py) run by `python -m bench.peer_process`."""

    kind = "peer"

    def __init__(self, case: Case, which: str, name: str, threads: int) -> None:
        self.case, self.which, self.name, self.threads = case, which, name, threads
        self.ready_s: float | None = None

    def _ask(self, cmd: str) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: its process ended (see {self.log})")
        msg = json.loads(line)
        if msg.get("error"):
            raise RuntimeError(msg["error"])
        return msg

    def setup(self) -> None:
        """Start the process; it reads the case's data and builds the peer's fit."""
        spec = {**asdict(self.case), "data": str(self.case.data)}
        WORK.mkdir(parents=True, exist_ok=True)
        self.log = WORK / f"peer-{self.which}-{self.case.key}.log"
        self._err: IO[str] = open(self.log, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.peer_process", self.which, json.dumps(spec),
             str(self.threads)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, text=True)
        self.ready_s = self._ask("ready")["ready_s"]

    def epoch(self) -> None:
        """One epoch of the peer's fit (the child's reply comes when it ended)."""
        self._ask("epoch")

    def accuracy(self) -> float:
        """Eval accuracy, computed in the child (untimed)."""
        return float(self._ask("acc")["acc"])

    def finish(self) -> dict:
        """Let fit return; stop the process. The peer's own set-up time is its ready_s."""
        try:
            self._ask("finish")
        finally:
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self._err.close()
        return {"ready_s": self.ready_s}


def _reply(msg: dict) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def main() -> int:
    """The child: prepare the data, set the peer up, then obey the parent line by line."""
    which, spec, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    from bench.harness import prepare
    from bench.peers import LightningPeer, SkorchPeer, available
    from cnnlab.device import set_threads

    available()  # imported before the timed set-up, as in the parent process before

    set_threads(threads)
    case = Case(**{**spec, "data": Path(spec["data"])})
    peer = {"lightning": LightningPeer, "skorch": SkorchPeer}[which](prepare(case))
    for line in sys.stdin:
        cmd = line.strip()
        try:
            if cmd == "ready":
                t0 = time.perf_counter()
                peer.setup()
                _reply({"ready_s": time.perf_counter() - t0})
            elif cmd == "epoch":
                peer.epoch()
                _reply({})
            elif cmd == "acc":
                _reply({"acc": peer.accuracy()})
            elif cmd == "finish":
                peer.finish()
                _reply({})
                return 0
        except Exception as exc:  # noqa: BLE001 - handed to the parent as one line
            _reply({"error": f"{type(exc).__name__}: {exc}"[:300]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
