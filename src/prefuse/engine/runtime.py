"""Where and how this process trains: device, precision, CPU threads, its place under torchrun.

``resolve(config.train)`` decides it once per process, from the config and torchrun's
environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``: nothing else reads them);
``apply`` (for the process) or ``applied`` (for a block) sets the process up for it
(thread count, the current CUDA device). The ``Runtime`` value is then handed down to
whatever needs it: the training loop, evaluation, the probes, the distributed helpers,
the checkpoints and inference. Nothing else looks at ``torch.cuda`` to choose a device.

Checked once each: the syntax of ``train.device`` and ``train.precision`` when the config
is read (``RunConfig.validate``), their availability here (CUDA, GPU N, bf16) in
``resolve``.

Devices: ``auto`` is ``cuda`` when CUDA is available, else ``cpu``; ``cuda`` is the
first GPU, or under torchrun GPU ``LOCAL_RANK``; ``cuda:N`` is GPU N. Under torchrun,
ranks on the CPU talk over gloo and ranks on GPUs over NCCL; a machine with fewer GPUs
than ranks is refused at once (``--device cpu`` runs those ranks on the CPU instead).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..config import DEVICES, TrainConfig
from ..data.batching import TensorSplit
from ..errors import ConfigError, PrefuseError


@dataclass(frozen=True)
class Runtime:
    """One process's training runtime (see the module docstring)."""

    device: torch.device
    precision: str = "fp32"
    threads: int = 1
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether training is spread over several processes (torchrun)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and prints results."""
        return self.rank == 0

    @property
    def bf16(self) -> bool:
        """Whether forward passes run under bf16 autocast."""
        return self.precision == "bf16"

    def autocast(self) -> torch.autocast:
        """The autocast context for a forward pass: bf16 when the runtime asks for it,
        otherwise disabled (fp32)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def describe(self) -> dict:
        """A plain summary for ``metrics.json``."""
        return {"device": str(self.device), "precision": self.precision,
                "threads": self.threads, "world_size": self.world_size,
                "backend": self.backend}


def default_threads() -> int:
    """The CPU thread count when ``train.threads`` is 0: one per process.

    A second intra-op thread made these small networks no faster, and when another
    process holds a core, torch's extra threads spin waiting for it: a run beside one
    busy process then took twice as long or more (``bench/threads.py`` measures it). The
    cores are put to use by training independent stages in parallel (``--jobs``).
    """
    return 1


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise PrefuseError(f"environment variable {name}={value!r} is not an integer "
                           "(it is set by torchrun)") from None


def _device(name: str, local_rank: int, world_size: int) -> torch.device:
    # ``name`` is well formed: the config check (or ``device_for``) saw to that.
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("train.device", f"{name!r} asked for, but CUDA is not available "
                          "here (torch sees no GPU); use cpu or auto")
    count = torch.cuda.device_count()
    if world_size > 1:
        if name != "cuda":
            raise ConfigError("train.device", f"{name!r} under torchrun: every rank would "
                              "use the same GPU; use cuda (rank r takes GPU LOCAL_RANK) or cpu")
        if local_rank >= count:
            raise PrefuseError(
                f"torchrun started more processes per node than there are GPUs ({count} "
                f"GPU(s), this is local rank {local_rank}); use --nproc-per-node {count} "
                "or fewer, or --device cpu to train every rank on the CPU")
        return torch.device("cuda", local_rank)
    index = int(name.partition(":")[2] or 0)
    if index >= count:
        raise ConfigError("train.device", f"{name!r} asked for, but there are {count} GPU(s) "
                          f"(cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def device_for(name: str) -> torch.device:
    """The device ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) means for one process
    (``predict``, ``evaluate``); ``ConfigError`` naming ``train.device`` if it is unknown
    or not here."""
    if not DEVICES.fullmatch(name):
        raise ConfigError("train.device", f"unknown device {name!r}; use auto, cpu, cuda "
                          "or cuda:N")
    return _device(name, local_rank=0, world_size=1)


def slot_device(name: str, slot: int) -> str:
    """The device setting for job slot ``slot`` of ``--jobs`` (a run's or a tuning's
    worker processes): the GPUs in turn where ``name`` leaves the choice open (``auto``
    or ``cuda``) and CUDA is available, else ``name`` itself."""
    if name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{slot % torch.cuda.device_count()}"
    return name


def resolve(train: TrainConfig, env: Mapping[str, str] | None = None) -> Runtime:
    """The runtime ``train`` asks for in the process torchrun's ``env`` (default
    ``os.environ``) describes; ``train`` has passed the config check (well-formed device
    and precision). A device or precision not available here raises ``ConfigError``
    naming the field."""
    env = os.environ if env is None else env
    world_size = _env_int(env, "WORLD_SIZE", 1)
    rank, local_rank = _env_int(env, "RANK", 0), _env_int(env, "LOCAL_RANK", 0)
    device = _device(train.device, local_rank, world_size)
    if train.precision == "bf16":
        if device.type != "cuda":
            raise ConfigError("train.precision", "bf16 needs a GPU (train.device cuda); on "
                              "the CPU it slows these networks down: use fp32")
        if not torch.cuda.is_bf16_supported():
            raise ConfigError("train.precision", f"{device} has no bf16 support; use fp32")
    backend = None
    if world_size > 1:
        if train.jobs > 1:
            raise ConfigError("train.jobs", "--jobs and torchrun do not mix: torchrun "
                              "already runs one process per GPU or core share; use --jobs 1")
        backend = "nccl" if device.type == "cuda" else "gloo"
    return Runtime(device=device, precision=train.precision,
                   threads=train.threads or default_threads(), world_size=world_size,
                   rank=rank, local_rank=local_rank, backend=backend)


def apply(runtime: Runtime) -> Runtime:
    """Set this process up for ``runtime`` from now on: torch's thread count, the current
    CUDA device, deterministic cuDNN. Returns ``runtime``."""
    torch.set_num_threads(runtime.threads)
    if runtime.device.type == "cuda":
        torch.cuda.set_device(runtime.device)
        # Same seed, same numbers: cuDNN's autotuner may pick a different kernel per run.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return runtime


@contextmanager
def applied(runtime: Runtime) -> Iterator[Runtime]:
    """Set this process up for ``runtime`` for a block (torch's thread count, the current
    CUDA device, see ``apply``); the thread count in effect before comes back after it."""
    threads = torch.get_num_threads()
    try:
        yield apply(runtime)
    finally:
        torch.set_num_threads(threads)


def place(split: TensorSplit, runtime: Runtime, share: float = 0.5) -> TensorSplit:
    """``split`` moved to the runtime's device for the whole run when it takes at most
    ``share`` of the GPU's free memory (the rest is left for the models); otherwise, and
    on the CPU, ``split`` itself, and batches are copied to the device one by one."""
    if runtime.device.type != "cuda":
        return split
    tensors = [*split.x.values(), *split.lengths.values(), *split.present.values(), split.y]
    size = sum(t.numel() * t.element_size() for t in tensors)
    free, _ = torch.cuda.mem_get_info(runtime.device)
    return split.to(runtime.device) if size <= share * free else split


def place_splits(data, runtime: Runtime):
    """``data`` (an object with ``train``, ``valid`` and ``test`` splits; a missing one is
    None) with each split ``place``d on the runtime's device; returns ``data``."""
    for name in ("train", "valid", "test"):
        if getattr(data, name) is not None:
            setattr(data, name, place(getattr(data, name), runtime))
    return data
