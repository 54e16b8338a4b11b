"""Measuring the activations autograd saves for backward in one training forward.

The measurement the project quotes (docs: "How this project reproduces the paper", section
"The saved-activation measurement").

The bytes of the unique tensor storages that autograd saves for backward during
one forward, seen through ``torch.autograd.graph.saved_tensors_hooks``; storages
of parameters and buffers are excluded, a storage saved twice counts once. The
count is deterministic (it depends on shapes and on the code path, not on the
machine); for one IGF it is quoted in units of one ``(B, C'_v, H, W)`` float32 map.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["SavedTensors", "record_saved", "saved_bytes"]

StorageKey = tuple[int, str]


class SavedTensors:
    """Unique storages saved for backward while :func:`record_saved` is active.

    Attributes:
        by_storage: storage key -> bytes, activations only.
        by_owner: storage key -> label of the innermost labelled module running when it was
            first saved (``""`` outside every labelled module).
        weight_copies: storage key -> bytes of saved copies of parameters in another dtype (autocast).
    """

    def __init__(self, module: nn.Module) -> None:
        tensors = [*module.parameters(), *module.buffers()]
        self.excluded: set[StorageKey] = {_key(t) for t in tensors}
        self.parameters_by_numel: dict[int, list[Tensor]] = {}
        for parameter in module.parameters():
            self.parameters_by_numel.setdefault(parameter.numel(), []).append(parameter)
        self.by_storage: dict[StorageKey, int] = {}
        self.by_owner: dict[StorageKey, str] = {}
        self.weight_copies: dict[StorageKey, int] = {}
        self.owners: list[str] = []

    def add(self, tensor: Tensor) -> None:
        key, nbytes = _key(tensor), tensor.untyped_storage().nbytes()
        if key in self.excluded or key in self.by_storage or key in self.weight_copies or nbytes == 0:
            return
        if self._is_weight_copy(tensor):
            self.weight_copies[key] = nbytes
            return
        self.by_storage[key] = nbytes
        self.by_owner[key] = self.owners[-1] if self.owners else ""

    def _is_weight_copy(self, tensor: Tensor) -> bool:
        """Whether the whole storage behind ``tensor`` holds a parameter cast to ``tensor``'s dtype.

        The storage, not the tensor, is compared: autograd often saves a view of the copy
        (a transpose for a matrix product, a slice).
        """
        storage = tensor.untyped_storage()
        numel = storage.nbytes() // tensor.element_size()
        candidates = [p for p in self.parameters_by_numel.get(numel, []) if p.dtype != tensor.dtype]
        if not candidates:
            return False
        with torch.no_grad():
            flat = tensor.new_empty(0).set_(storage, 0, (numel,), (1,))
            return any(torch.equal(p.detach().flatten().to(tensor.dtype), flat) for p in candidates)

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


def _key(tensor: Tensor) -> StorageKey:
    return (tensor.untyped_storage().data_ptr(), str(tensor.device))


@contextlib.contextmanager
def record_saved(module: nn.Module, owners: Sequence[tuple[str, nn.Module]] = ()) -> Iterator[SavedTensors]:
    """Record what autograd saves inside the ``with`` block.

    Args:
        module: its parameters and buffers are excluded.
        owners: optional ``(label, submodule)`` pairs (a label may repeat); a saved storage is
            attributed to the innermost labelled submodule running when it is first saved.
    """
    saved = SavedTensors(module)
    handles = []
    for label, sub in owners:

        def enter(_module: nn.Module, _inputs: object, label: str = label) -> None:
            saved.owners.append(label)

        def leave(_module: nn.Module, _inputs: object, _output: object) -> None:
            saved.owners.pop()

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
