"""Checkpoint files: atomic writes, clear errors, RNG capture, config checks.

A checkpoint is a dict saved with :func:`torch.save` holding the resolved run config (so that
evaluation and prediction rebuild the model from the file alone), the model, optimizer,
scheduler and grad-scaler states, the position in training (epoch, step, batches done in the
epoch, training seconds), the best validation metric and every rank's RNG states.

Writing goes to a temporary file in the same folder, is flushed to disk and then moved over the
target with :func:`os.replace`, which is atomic: a crash while saving leaves the previous good
file untouched, and the temporary file it leaves (``.last.pt.<random>.tmp``) is removed by
:func:`remove_orphaned_temporaries` when the next run starts. A write that fails (a full disk,
a quota, a read-only folder) removes its temporary file, leaves the previous file as it was and
raises :class:`CheckpointError` naming the path, the reason and the space free, so the command
stops with one line and the same command resumes once there is room.

Loading uses ``weights_only=True`` (no code from the file runs), and every checkpoint carries a
SHA-256 digest of its content (every tensor's dtype, shape and bytes, every key and value),
recomputed on every load: a changed byte that still decodes is refused, not trained or
evaluated on.
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcmfnet.errors import CheckpointError

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "capture_rng_state",
    "config_differences",
    "content_digest",
    "load_checkpoint",
    "remove_orphaned_temporaries",
    "restore_rng_state",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "igf-dcmfnet/1"


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, :func:`os.replace`).

    Args:
        path: destination file; its folder is created if needed.
        state: the checkpoint dict; ``"format"`` and ``"sha256"`` (:func:`content_digest`) keys are added
            (replacing any of those names in ``state``).

    Returns:
        the path written.

    Raises:
        CheckpointError: the file could not be written (no space left, a quota, no permission); the
            message names the path and the reason, the temporary file is removed and ``path`` keeps
            its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, **{k: v for k, v in state.items() if k not in ("format", "sha256")}}
    payload["sha256"] = content_digest(payload)
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise CheckpointError(_write_failure(path, error, _payload_bytes(payload))) from error
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise
    return path


#: The errors of a write that found no room: a full disk, a quota, a file-size limit.
_NO_ROOM = {getattr(errno, name) for name in ("ENOSPC", "EDQUOT", "EFBIG") if hasattr(errno, name)}


def _payload_bytes(payload: Mapping[str, Any]) -> int:
    """The bytes of the tensors in ``payload`` (what a checkpoint file needs, give or take its index)."""
    total = 0
    stack: list[Any] = [payload]
    while stack:
        value = stack.pop()
        if isinstance(value, torch.Tensor):
            total += value.numel() * value.element_size()
        elif isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)
    return total


def _size(count: int) -> str:
    """``count`` bytes in B, KiB, MiB or GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _write_failure(path: Path, error: OSError, needed: int) -> str:
    """One line: which checkpoint could not be written, why, and what the folder still holds."""
    reason = error.strerror or str(error)
    name = errno.errorcode.get(error.errno, "") if error.errno is not None else ""
    message = f"cannot write checkpoint {path}: {reason}" + (f" ({name})" if name else "")
    if error.errno in _NO_ROOM:
        try:
            free: int | None = shutil.disk_usage(path.parent).free
        except OSError:
            free = None
        if free is not None:
            message += f"; {_size(free)} free there, the checkpoint needs about {_size(needed)}"
    kept = f"{path.name} keeps its last good content" if path.exists() else f"{path.name} was not written"
    return f"{message}; {kept}. Free space and run the same command again to resume"


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated, not a checkpoint of this format, or its content
            does not match its digest (the message names the file).
    """
    path = Path(path)
    _check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # weights_only refused an object: not ours, and not to be unpickled
        raise CheckpointError(
            f"{path} is not a DCMFNet checkpoint: it holds Python objects other than tensors and plain values "
            "(a checkpoint written by `dcmfnet train` holds none), so it is not loaded"
        ) from error
    except Exception as error:  # torch raises RuntimeError/EOFError for damaged files
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): the file is truncated or damaged "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a DCMFNet checkpoint of format {CHECKPOINT_FORMAT!r} (found {found!r})")
    stored = state.pop("sha256", None)
    if stored is None:
        raise CheckpointError(f"checkpoint {path} carries no content digest (written by an older version); "
                              "it cannot be checked, so it is not used")  # fmt: skip
    if stored != content_digest(state):
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its content does not match the SHA-256 digest saved with it "
            "(bytes changed on disk or in transfer); use another copy or an earlier checkpoint"
        )
    missing = [key for key in ("config", "model") if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}")
    return state


def _check_checkpoint_file(path: Path) -> None:
    """Refuse what cannot be a checkpoint before torch reads it: a missing path, a folder, a file that is no zip.

    Raises:
        CheckpointError: naming the path, what was expected and what was found.
    """
    expected = "a checkpoint file written by `dcmfnet train` (best.pt or last.pt)"
    if path.is_dir():
        exported = " (an exported model folder: pass it as --model)" if (path / "config.json").is_file() else ""
        raise CheckpointError(f"checkpoint {path} is a folder{exported}; expected {expected}")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    with path.open("rb") as handle:
        head = handle.read(8)
    if not head.startswith(b"PK"):  # torch.save writes a zip archive (a truncated one still starts so)
        raise CheckpointError(
            f"{path} is not a checkpoint: expected {expected}, a zip archive; got a file of {path.stat().st_size} "
            f"bytes starting {head!r}"
        )


def content_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of a checkpoint dict's content: keys, values, tensors' dtypes, shapes and bytes.

    Raises:
        TypeError: a value is not a tensor, a number, a string, ``None`` or a dict/list/tuple of those.
    """
    hasher = hashlib.sha256()
    _feed(hasher, state)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        hasher.update(f"T{tensor.dtype}{tuple(tensor.shape)}:".encode())
        hasher.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        hasher.update(f"d{len(value)}:".encode())
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, (list, tuple)):
        hasher.update(f"{'l' if isinstance(value, list) else 't'}{len(value)}:".encode())
        for item in value:
            _feed(hasher, item)
    elif value is None or isinstance(value, (bool, int, float, str)):
        text = repr(value)
        hasher.update(f"{type(value).__name__}{len(text)}:{text}".encode())
    else:
        raise TypeError(f"a checkpoint holds tensors, numbers, strings and containers; got {type(value).__name__}")


def remove_orphaned_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` left in ``folder``; return them."""
    orphans = sorted(Path(folder).glob(".*.pt.*.tmp"))
    for orphan in orphans:
        orphan.unlink(missing_ok=True)
    return orphans


def config_differences(expected: Any, found: Any, *, prefix: str = "") -> list[str]:
    """List the dotted keys where two nested config dicts differ, as ``"key: expected != found"``."""
    if isinstance(expected, Mapping) and isinstance(found, Mapping):
        differences = []
        for key in sorted(set(expected) | set(found), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in expected or key not in found:
                differences.append(f"{name}: only in {'found' if key in found else 'expected'}")
            else:
                differences.extend(config_differences(expected[key], found[key], prefix=name))
        return differences
    return [] if expected == found else [f"{prefix}: {expected!r} != {found!r}"]


def capture_rng_state() -> dict[str, Any]:
    """The Python, NumPy, torch (and CUDA) RNG states, as tensors and plain values."""
    numpy_state = np.random.get_state(legacy=True)
    assert isinstance(numpy_state, tuple)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(numpy_state[1].astype(np.int64)),
            "pos": int(numpy_state[2]),
            "has_gauss": int(numpy_state[3]),
            "cached_gaussian": float(numpy_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
