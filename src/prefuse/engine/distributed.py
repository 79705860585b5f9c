"""Multi-process data-parallel training with torch.distributed, started by ``torchrun``.

``torchrun --nproc-per-node N -m prefuse run ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; the runtime (``runtime.resolve``) turns them into this rank's device and
backend (NCCL for ranks on GPUs, gloo on the CPU), and ``init()`` joins the process
group. Without those variables everything here is a no-op for one process.

How ``fit`` uses it: every rank draws the same shuffled batch order from the same seed
and trains on its slice ``[rank::world]`` of each batch; DistributedDataParallel averages
the gradients, so all ranks hold the same weights, score the same full validation split
and stop at the same epoch. Only the main rank (``is_main()``) writes files.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from ..data.batching import Batch
from ..errors import PrefuseError
from . import runtime


def world_size() -> int:
    """Number of processes (1 when not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's rank (0 when not started by torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes files and prints results (rank 0)."""
    return rank() == 0


def active() -> bool:
    """Whether training is spread over several processes."""
    return world_size() > 1


def backend() -> str | None:
    """The process-group backend the runtime chose: NCCL for ranks on GPUs, gloo for
    ranks on the CPU (even where CUDA exists, with ``--device cpu``); None for one
    process."""
    return runtime.current().backend


def device() -> torch.device:
    """The device this rank trains on (see ``runtime.resolve``)."""
    return runtime.current().device


def init() -> None:
    """Join the process group described by torchrun's environment (idempotent)."""
    if not active() or dist.is_initialized():
        return
    current = runtime.current()
    if current.device.type == "cuda":
        torch.cuda.set_device(current.device)
    dist.init_process_group(current.backend)


def barrier() -> None:
    """Wait until every rank gets here (joining the process group first if need be)."""
    init()
    if active():
        dist.barrier()


def shard(batch: Batch) -> Batch:
    """This rank's share of a batch that every rank drew identically. A batch of context
    windows is refused: taking every n-th row would cut its windows apart (the config
    check refuses context under torchrun before any training)."""
    step = world_size()
    if step == 1:
        return batch
    if batch.windows is not None:
        raise PrefuseError(f"context windows cannot be shared over {step} processes: each "
                           "rank's rows would cut them apart; train with context in one "
                           "process")
    part = slice(rank(), None, step)
    return batch.map(lambda t: t[part], host=lambda t: t[part])


def sum_all(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (``values`` itself for one process)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device())
    dist.all_reduce(t)
    return t.tolist()


def average_all_(tensor: torch.Tensor) -> torch.Tensor:
    """Replace ``tensor`` in place by its mean over all ranks, as DistributedDataParallel
    averages gradients (for gradients a method computes itself); returns it."""
    if active():
        dist.all_reduce(tensor)
        tensor.div_(world_size())
    return tensor
