"""The one place a device name becomes a :class:`torch.device`: training, evaluation, prediction, the demo."""

from __future__ import annotations

import torch

from dcmfnet.errors import DeviceError

__all__ = ["DEVICE_CHOICES", "resolve_device"]

#: What a command's ``--device`` accepts.
DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto", *, local_rank: int | None = None) -> torch.device:
    """The device ``device`` names, checked to exist on this machine.

    Args:
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``,
            or a :class:`torch.device`.
        local_rank: The GPU of this process under ``torchrun`` when ``device`` names no index.

    Raises:
        DeviceError: Not a device name, or CUDA (or that GPU) is not available here.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise DeviceError(f"unknown device {name!r}; expected one of {', '.join(DEVICE_CHOICES)}") from error
    if chosen.type != "cuda":
        return chosen
    if not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} was requested but CUDA is not available on this machine; use cpu or auto")
    if chosen.index is None:
        chosen = torch.device("cuda", local_rank or 0)
    if chosen.index >= torch.cuda.device_count():
        raise DeviceError(
            f"device {str(chosen)!r} was requested but this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return chosen
