"""Multi-process data-parallel training with torch.distributed, started by ``torchrun``.

``torchrun --nproc-per-node N -m prefuse run ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; the runtime (``runtime.resolve``) turns them into this rank's device and
backend (NCCL for ranks on GPUs, gloo on the CPU), and ``init(runtime)`` joins the
process group. Every helper here takes that ``Runtime``; for one process each is a no-op.

How ``fit`` uses it: every rank draws the same shuffled batch order from the same seed
and trains on its slice ``[rank::world]`` of each batch; DistributedDataParallel averages
the gradients, so all ranks hold the same weights, score the same full validation split
and stop at the same epoch. Only the main rank (``runtime.is_main``) writes files.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from ..data.batching import Batch
from ..errors import PrefuseError
from .runtime import Runtime


def init(runtime: Runtime) -> None:
    """Join the process group ``runtime`` belongs to (idempotent; nothing for one
    process)."""
    if not runtime.distributed or dist.is_initialized():
        return
    if runtime.device.type == "cuda":
        torch.cuda.set_device(runtime.device)
    dist.init_process_group(runtime.backend)


def barrier(runtime: Runtime) -> None:
    """Wait until every rank gets here (joining the process group first if need be)."""
    init(runtime)
    if runtime.distributed:
        dist.barrier()


def shard(batch: Batch, runtime: Runtime) -> Batch:
    """This rank's share of a batch that every rank drew identically. A batch of context
    windows is refused: taking every n-th row would cut its windows apart (the config
    check refuses context under torchrun before any training)."""
    step = runtime.world_size
    if step == 1:
        return batch
    if batch.windows is not None:
        raise PrefuseError(f"context windows cannot be shared over {step} processes: each "
                           "rank's rows would cut them apart; train with context in one "
                           "process")
    part = slice(runtime.rank, None, step)
    return batch.map(lambda t: t[part], host=lambda t: t[part])


def sum_all(values: list[float], runtime: Runtime) -> list[float]:
    """Element-wise sum of ``values`` over all ranks (``values`` itself for one process)."""
    if not runtime.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=runtime.device)
    dist.all_reduce(t)
    return t.tolist()


def average_all_(tensor: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Replace ``tensor`` in place by its mean over all ranks, as DistributedDataParallel
    averages gradients (for gradients a method computes itself); returns it."""
    if runtime.distributed:
        dist.all_reduce(tensor)
        tensor.div_(runtime.world_size)
    return tensor
