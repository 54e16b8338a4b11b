"""The errors a user can fix: one base class, :class:`UserError`, at the bottom of the package.

Every layer raises these; the command layer (:mod:`dcmfnet.commands`) turns each into one line on
stderr and exit code 2 (``--debug`` shows the traceback). Anything else is a defect and keeps its
traceback. Each class also derives from the built-in type callers caught before (``ValueError``,
``OSError``, ``RuntimeError``), so ``except ValueError`` around a bad value still works.

This module imports nothing of the package: every other module may import it.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DeviceError",
    "ImageReadError",
    "InputError",
    "PretrainedError",
    "SplitError",
    "UserError",
    "is_user_error",
]


class UserError(Exception):
    """An error the user can fix (a config, a file, a split, a device, an image); the message says how."""


class ConfigError(UserError, ValueError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""


class InputError(UserError, ValueError):
    """A user's input (an image, an expression, an option's value) cannot be used; the message says why."""


class SplitError(InputError):
    """A dataset has no split of that name; the message lists the splits it has."""


class DeviceError(UserError, RuntimeError):
    """The requested device is not available here (``cuda`` without CUDA), or is not a device name."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file is missing, truncated, of another format, or from another config."""


class PretrainedError(UserError, OSError):
    """An exported model folder is incomplete, damaged or of another format; the message names the file."""


class ImageReadError(UserError, OSError):
    """An image file is missing, or Pillow cannot decode it; the message names the file."""


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is the user's to fix rather than a defect.

    Every :class:`UserError`, and the operating system's file errors (``OSError``: a path that does
    not exist, a folder that cannot be written), which name the file.
    """
    return isinstance(error, (UserError, OSError))
