"""Multi-process training under torchrun: process group, rank helpers, reductions.

Everything here is a no-op in a plain single process, so the trainer calls it unconditionally.
torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); we read nothing else.
Conventions: --batch-size is the GLOBAL batch; every rank computes the same shuffled order
(epoch_order is a pure function of seed and epoch) and takes its contiguous share of each
global batch, so a run with N processes follows the single-process run step for step.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from cnnlab.errors import CnnlabError

T = TypeVar("T")


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment; (0, 1, 0) without it."""
    try:
        return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise CnnlabError("RANK / WORLD_SIZE / LOCAL_RANK must be integers (set by torchrun)") \
            from None


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the process that writes files and prints (rank 0)."""
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Join torchrun's process group (nccl for CUDA, gloo otherwise); False when not launched so."""
    r, world, local = env_world()
    if world <= 1:
        return False
    if dist.is_initialized():
        return True
    if not dist.is_available():
        raise CnnlabError("this PyTorch build has no torch.distributed; run without torchrun")
    if device.type == "cuda":
        torch.cuda.set_device(local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    # The default timeout (30 min for gloo, 10 for nccl) covers rank 0 writing the report.
    dist.init_process_group(backend=backend, rank=r, world_size=world,
                            timeout=timedelta(minutes=30))
    atexit.register(leave)
    return True


def leave() -> None:
    """Leave the process group (the command's end does it; atexit where the API ran alone).

    The DDP model holds the gloo/nccl group and its threads: it is collected first, so the
    group is not left to the interpreter's teardown, where a rank of a finished run once
    aborted ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _comm_device() -> torch.device:
    # nccl only moves CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64, so counts stay exact)."""
    if not is_distributed():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (pickled; for small things like paths and configs)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, device=_comm_device())
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and hand its result (or its CnnlabError) to every rank."""
    if not is_distributed():
        return fn()
    result: tuple[bool, object] = (True, None)
    if is_main():
        try:
            result = (True, fn())
        except CnnlabError as exc:
            result = (False, str(exc))
    ok, value = broadcast_object(result)
    if not ok:
        raise CnnlabError(str(value))
    return value  # type: ignore[return-value]


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Let local rank 0 of each node go first (e.g. decode and fill the cache), then the rest."""
    if not is_distributed():
        yield
        return
    local = env_world()[2]
    if local != 0:
        dist.barrier()
    try:
        yield
    finally:
        if local == 0:
            dist.barrier()


def local_share(idx: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous part of a global batch of indices (may be empty for tiny batches)."""
    if not is_distributed():
        return idx
    return torch.tensor_split(idx, world_size())[rank()]


def wrap(model: torch.nn.Module, device: torch.device, sync_bn: bool = True) -> torch.nn.Module:
    """The model DistributedDataParallel trains with (the model itself when not distributed)."""
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda" and sync_bn:
        # One BatchNorm over the global batch, as in the single-process run (CUDA only). It
        # replaces the BN modules (same parameters), so callers holding BN modules opt out.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)
