"""Saved activations of one training forward (SPEC §6).

The bytes of the unique tensor storages that autograd saves for backward during
one forward, seen through ``torch.autograd.graph.saved_tensors_hooks``; storages
of parameters and buffers are excluded, a storage saved twice counts once. The
count is deterministic (it depends on shapes and on the code path, not on the
machine); for one IGF it is quoted in units of one ``(B, C'_v, H, W)`` float32 map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

__all__ = ["SavedTensors", "record_saved", "saved_bytes"]


class SavedTensors:
    """Unique storages saved for backward while :func:`record_saved` is active.

    Attributes:
        by_storage: storage key -> bytes.
        by_owner: storage key -> label of the module that saved it first (``""`` outside any labelled module).
    """

    def __init__(self, excluded: set[tuple[int, str]]) -> None:
        self.excluded = excluded
        self.by_storage: dict[tuple[int, str], int] = {}
        self.by_owner: dict[tuple[int, str], str] = {}
        self.owner = ""

    def add(self, tensor: Tensor) -> None:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), str(tensor.device))
        if key in self.excluded or key in self.by_storage or storage.nbytes() == 0:
            return
        self.by_storage[key] = storage.nbytes()
        self.by_owner[key] = self.owner

    @property
    def total(self) -> int:
        """Bytes of all recorded storages."""
        return sum(self.by_storage.values())

    def per_owner(self) -> dict[str, int]:
        """Bytes by owner label."""
        totals: dict[str, int] = {}
        for key, nbytes in self.by_storage.items():
            totals[self.by_owner[key]] = totals.get(self.by_owner[key], 0) + nbytes
        return totals


def _storage_keys(module: nn.Module) -> set[tuple[int, str]]:
    tensors = [*module.parameters(), *module.buffers()]
    return {(t.untyped_storage().data_ptr(), str(t.device)) for t in tensors}


@contextlib.contextmanager
def record_saved(module: nn.Module, owners: dict[str, nn.Module] | None = None) -> Iterator[SavedTensors]:
    """Record what autograd saves inside the ``with`` block.

    Args:
        module: its parameters and buffers are excluded.
        owners: optional label -> submodule; a saved storage is attributed to the
            innermost labelled submodule running when it is first saved.
    """
    saved = SavedTensors(_storage_keys(module))
    handles = []
    for label, sub in (owners or {}).items():

        def enter(_module: nn.Module, _inputs: object, label: str = label) -> None:
            saved.owner = label

        def leave(_module: nn.Module, _inputs: object, _output: object) -> None:
            saved.owner = ""

        handles += [sub.register_forward_pre_hook(enter), sub.register_forward_hook(leave)]

    def pack(tensor: Tensor) -> Tensor:
        saved.add(tensor)
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield saved
    finally:
        for handle in handles:
            handle.remove()


def saved_bytes(module: nn.Module, forward: Callable[[], object]) -> int:
    """Bytes saved for backward by one call of ``forward`` (which runs ``module`` with autograd on)."""
    with torch.enable_grad(), record_saved(module) as saved:
        forward()
    return saved.total
