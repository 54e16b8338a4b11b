"""The configs that ship with DCMFNet, found by name through :mod:`importlib.resources`.

A config argument is either the path of a YAML file or the name of a shipped config
(``cpu_synthetic`` or ``cpu_synthetic.yaml``); a path that exists wins over a name.
Nothing here looks at the working directory except for an explicit path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["available_configs", "resolve_config"]


def available_configs() -> list[str]:
    """Names of the shipped configs, without the ``.yaml`` suffix, sorted."""
    folder = resources.files(__name__)
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """The file a config argument means.

    Args:
        name_or_path: A path to a YAML file, or the name of a shipped config.

    Raises:
        FileNotFoundError: Neither a file nor a shipped config; the message lists the shipped names.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    name = str(name_or_path).removesuffix(".yaml")
    shipped = resources.files(__name__) / f"{name}.yaml"
    if "/" not in name and shipped.is_file():
        return Path(str(shipped))
    shipped_names = ", ".join(available_configs())
    raise FileNotFoundError(f"config {str(name_or_path)!r} is neither a file nor a shipped config ({shipped_names})")
