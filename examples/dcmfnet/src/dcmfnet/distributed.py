"""Multi-process helpers for ``torchrun`` + ``DistributedDataParallel`` (gloo on CPU, nccl on GPU).

A single process is the default: without torchrun's environment (``WORLD_SIZE`` unset or 1)
every helper is a no-op and :func:`setup` returns rank 0 of a world of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dcmfnet.devices import resolve_device

__all__ = ["DistributedContext", "all_gather_object", "all_reduce_flag", "barrier", "cleanup", "setup"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands.

    Attributes:
        rank: global rank.
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        device: the device this process computes on.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that writes files and logs)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group with more than one process is active."""
        return self.world_size > 1


def setup(*, device: str = "auto") -> DistributedContext:
    """Initialise the process group when launched by ``torchrun`` and pick the device.

    Args:
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``.

    Returns:
        the :class:`DistributedContext`.

    Raises:
        dcmfnet.errors.DeviceError: the device is not available here (see :func:`~dcmfnet.devices.resolve_device`).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = resolve_device(device, local_rank=local_rank)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if chosen.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)


def cleanup() -> None:
    """Destroy the process group if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_flag(flag: bool | torch.Tensor, *, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (e.g. "a stop signal arrived").

    ``flag`` may be a 0-d bool tensor on ``device`` (one host synchronisation in all).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    value = torch.as_tensor(flag, device=device).float().reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def all_gather_object(value: object) -> list[object]:
    """Every rank's ``value``, in rank order (``[value]`` in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered
