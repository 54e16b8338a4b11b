"""Run configuration: dataclasses read through omegaconf (YAML file + ``key=value`` overrides).

The run config has four sections: ``model`` (a :class:`~dcmfnet.config.ModelConfig`),
``data``, ``optim`` and ``train``. The defaults are the paper's recipe (§4.1: Adam with lr
1.82e-5 for the vision encoder and 1.82e-4 for the rest, 15 epochs, batch 6, 480×480, sigmoid
BCE); ``configs/cpu_synthetic.yaml`` overrides them for the built-in dataset on a CPU.

A run config's ``model:`` is either the model fields themselves or the name of a model-config
file (``model: paper_resnet101.yaml``, relative to the run config). Unknown keys, in a file or
an override, are errors that name the key and list the valid ones.

Example::

    cfg = load_run_config("cpu_synthetic", ["train.epochs=2"])
    cfg.train.epochs  # 2
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from dcmfnet.config import ModelConfig
from dcmfnet.configs import resolve_config
from dcmfnet.data.config import DataConfig, SyntheticDataConfig
from dcmfnet.data.expressions import KINDS as BENCHMARK_KINDS
from dcmfnet.errors import ConfigError
from dcmfnet.precision import PRECISIONS

__all__ = [
    "ConfigError",
    "DataConfig",
    "OptimConfig",
    "RunConfig",
    "SyntheticDataConfig",
    "TrainConfig",
    "config_to_dict",
    "load_model_section",
    "load_run_config",
    "run_config_from_dict",
]

DATASETS = ("synthetic", *BENCHMARK_KINDS, "refcoco", "refcoco+", "refcocog", "refclef")
SCHEDULES = ("constant", "poly", "cosine")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule.

    The two learning rates go to the parameter groups of ``model.parameter_groups()`` named
    ``backbone`` and ``rest``. ``schedule_by: time`` makes the schedule's progress the share of
    ``train.max_train_minutes`` elapsed (a budgeted run that anneals whatever the machine's speed).
    """

    optimizer: str = "adam"
    lr_backbone: float = 1.82e-5
    lr_rest: float = 1.82e-4
    weight_decay: float = 0.0
    schedule: str = "poly"
    poly_power: float = 0.9
    warmup_steps: int = 0
    schedule_by: str = "steps"
    grad_clip_norm: float = 0.0


@dataclass
class TrainConfig:
    """The loop: epochs, batch, precision, loss, budget, logging.

    The loss is sigmoid BCE (paper) plus ``dice_weight`` times a soft Dice loss (0 by default).
    ``eval_every_steps`` also validates every that many optimizer steps inside an epoch (a learning curve
    for long epochs). ``max_train_minutes`` stops training (not counting validation) when reached; ``num_threads``
    sets ``torch.set_num_threads`` (1 is fastest on a CPU shared with other jobs). A non-finite
    loss or gradient stops the run with an error; ``skip_nonfinite`` skips such batches instead
    (their number is logged as ``skipped_batches``). ``reference_step_seconds`` is how long one
    optimizer step took on ``reference_machine`` (the machine the config was timed on); the run prints
    both, and the whole run's expected time there, before the first step. They change nothing else.
    """

    epochs: int = 15
    batch_size: int = 6
    eval_batch_size: int | None = None
    grad_accum_steps: int = 1
    precision: str = "fp32"
    dice_weight: float = 0.0
    seed: int = 0
    device: str = "auto"
    max_train_minutes: float | None = None
    max_steps: int | None = None
    eval_every_epochs: int = 1
    eval_every_steps: int | None = None
    log_every_steps: int = 20
    gallery_samples: int = 8
    progress_bar: bool = True
    num_threads: int | None = None
    skip_nonfinite: bool = False
    reference_step_seconds: float | None = None
    reference_machine: str | None = None


@dataclass
class RunConfig:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def _valid_keys(node: Any) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(node)) if dataclasses.is_dataclass(node) else []


def _merge(sources: Sequence[tuple[str, Any]]) -> DictConfig:
    merged = OmegaConf.structured(RunConfig)
    for name, source in sources:
        try:
            merged = OmegaConf.merge(merged, source)
        except (ConfigKeyError, ConfigAttributeError) as error:
            key = error.full_key or getattr(error, "key", "?")
            parent = str(key).rsplit(".", 1)[0] if "." in str(key) else ""
            node: Any = RunConfig()
            for part in parent.split(".") if parent else []:
                node = getattr(node, part, None)
            valid = ", ".join(_valid_keys(node)) or "?"
            raise ConfigError(
                f"unknown config key {key!r} in {name}; valid keys under {parent or 'the top level'}: {valid}"
            ) from None
        except ValidationError as error:
            raise ConfigError(_invalid_value_message(error, name)) from None
        except OmegaConfBaseException as error:
            raise ConfigError(f"invalid value in {name}: {str(error).splitlines()[0]}") from None
    return merged


def _invalid_value_message(error: ValidationError, source: str) -> str:
    """One line: the key, the value given and the type the config declares for it (OmegaConf's reason else)."""
    hint = None
    if dataclasses.is_dataclass(error.object_type) and isinstance(error.key, str):
        hint = typing.get_type_hints(error.object_type).get(error.key)
    expected = f"expected {_type_name(hint)}" if hint is not None else str(error.msg).splitlines()[0]
    return f"invalid value for {error.full_key} in {source}: {expected}, got {getattr(error, 'value', None)!r}"


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}
_PLURALS = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


def _type_name(hint: Any) -> str:
    """A config field's annotation as a message says it: ``a number``, ``an integer or null``, ``a list of strings``."""
    args, origin = typing.get_args(hint), typing.get_origin(hint)
    if args and origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(arg) for arg in args)
    if dict in (origin, hint):
        return "a mapping"
    if origin in (list, tuple, Sequence):
        return f"a list of {_PLURALS.get(args[0], 'values') if args else 'values'}"
    return _TYPE_NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _validate(cfg: RunConfig) -> RunConfig:
    checks = [
        (cfg.data.dataset in DATASETS, f"data.dataset must be one of {DATASETS}, got {cfg.data.dataset!r}"),
        (
            cfg.train.precision in PRECISIONS,
            f"train.precision must be one of {PRECISIONS}, got {cfg.train.precision!r}",
        ),
        (cfg.optim.schedule in SCHEDULES, f"optim.schedule must be one of {SCHEDULES}, got {cfg.optim.schedule!r}"),
        (
            cfg.optim.schedule_by in ("steps", "time"),
            f"optim.schedule_by must be 'steps' or 'time', got {cfg.optim.schedule_by!r}",
        ),
        (
            cfg.optim.optimizer in ("adam", "adamw"),
            f"optim.optimizer must be 'adam' or 'adamw', got {cfg.optim.optimizer!r}",
        ),
        (
            cfg.optim.schedule_by != "time" or cfg.train.max_train_minutes,
            "optim.schedule_by=time needs train.max_train_minutes",
        ),
        (cfg.train.batch_size > 0, f"train.batch_size must be positive, got {cfg.train.batch_size}"),
        (cfg.train.grad_accum_steps > 0, f"train.grad_accum_steps must be positive, got {cfg.train.grad_accum_steps}"),
        (cfg.train.epochs > 0, f"train.epochs must be positive, got {cfg.train.epochs}"),
        (cfg.data.image_size > 0, f"data.image_size must be positive, got {cfg.data.image_size}"),
        (
            cfg.train.device in ("auto", "cpu", "cuda"),
            f"train.device must be auto, cpu or cuda, got {cfg.train.device!r}",
        ),
    ]
    checks += _number_checks(cfg)
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    return cfg


def _number_checks(cfg: RunConfig) -> list[tuple[bool, str]]:
    """Learning rates, weight decay, loss weights and budgets: finite and in range (``None``: no budget)."""

    def at_least(key: str, value: float | None, low: float, *, above: bool = False) -> tuple[bool, str]:
        ok = value is not None and math.isfinite(value) and (value > low if above else value >= low)
        return ok, f"{key} must be a finite number {'>' if above else '>='} {low}, got {value!r}"

    checks = [
        at_least("optim.lr_backbone", cfg.optim.lr_backbone, 0),
        at_least("optim.lr_rest", cfg.optim.lr_rest, 0),
        at_least("optim.weight_decay", cfg.optim.weight_decay, 0),
        at_least("optim.poly_power", cfg.optim.poly_power, 0, above=True),
        at_least("optim.grad_clip_norm", cfg.optim.grad_clip_norm, 0),
        at_least("optim.warmup_steps", cfg.optim.warmup_steps, 0),
        at_least("train.dice_weight", cfg.train.dice_weight, 0),
        at_least("train.eval_every_epochs", cfg.train.eval_every_epochs, 1),
        at_least("train.log_every_steps", cfg.train.log_every_steps, 1),
    ]
    if cfg.train.max_train_minutes is not None:
        checks.append(at_least("train.max_train_minutes", cfg.train.max_train_minutes, 0, above=True))
    if cfg.train.max_steps is not None:
        checks.append(at_least("train.max_steps", cfg.train.max_steps, 1))
    if cfg.train.reference_step_seconds is not None:
        checks.append(at_least("train.reference_step_seconds", cfg.train.reference_step_seconds, 0, above=True))
    if cfg.train.eval_every_steps is not None:
        checks.append(at_least("train.eval_every_steps", cfg.train.eval_every_steps, 1))
    return checks


def load_run_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Build a :class:`RunConfig` from defaults, a YAML file and ``key=value`` overrides.

    Args:
        path: YAML file or the name of a shipped config (``cpu_synthetic``); ``None``: defaults only.
        overrides: dotlist overrides such as ``["train.epochs=3", "model.backbone=tiny"]``.

    Raises:
        FileNotFoundError: ``path`` is neither a file nor a shipped config.
        ConfigError: unknown key, wrong type or invalid value (the message names it).
    """
    sources: list[tuple[str, Any]] = []
    if path is not None:
        path = resolve_config(path)
        loaded = OmegaConf.load(path)
        if isinstance(loaded, DictConfig) and isinstance(loaded.get("model"), str):
            # `model: paper_resnet101.yaml` names a model-config file, relative to this file
            # (or of a shipped config)
            beside = path.parent / loaded.model
            model_path = resolve_config(beside if beside.is_file() else loaded.model)
            loaded.model = OmegaConf.load(model_path)
        sources.append((str(path), loaded))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
    if overrides:
        sources.append(("the command-line overrides", OmegaConf.from_dotlist(list(overrides))))
    merged = _merge(sources)
    return _validate(OmegaConf.to_object(merged))  # type: ignore[arg-type]


# The top-level sections of a run config; a YAML file with none of them is a model config.
_RUN_SECTIONS = ("model", "data", "optim", "train")


def load_model_section(path: str | Path, overrides: Sequence[str] = ()) -> ModelConfig:
    """The model a config describes: a run config's ``model`` section, or a model config (fields at the top level).

    Args:
        path: YAML file or the name of a shipped config (``cpu_synthetic``, ``model_cpu``, ``paper_resnet101``).
        overrides: run-config dotlist overrides (``model.igf_layers=3``), as ``dcmfnet train`` takes them.

    Raises:
        FileNotFoundError: ``path`` is neither a file nor a shipped config.
        ConfigError: unknown key, wrong type or invalid value (the message names it).
    """
    resolved = resolve_config(path)
    loaded = OmegaConf.load(resolved)
    if isinstance(loaded, DictConfig) and not any(section in loaded for section in _RUN_SECTIONS):
        sources: list[tuple[str, Any]] = [(str(resolved), OmegaConf.create({"model": loaded}))]
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
        if overrides:
            sources.append(("the command-line overrides", OmegaConf.from_dotlist(list(overrides))))
        cfg = _validate(OmegaConf.to_object(_merge(sources)))  # type: ignore[arg-type]
        return cfg.model
    return load_run_config(resolved, overrides).model


def run_config_from_dict(values: Mapping[str, Any], *, source: str = "the checkpoint") -> RunConfig:
    """Rebuild a :class:`RunConfig` from :func:`config_to_dict`'s output (e.g. a checkpoint's)."""
    return _validate(OmegaConf.to_object(_merge([(source, OmegaConf.create(dict(values)))])))  # type: ignore[arg-type]


def config_to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain nested dicts (what checkpoints store)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)  # type: ignore[return-value]
