"""Build the dataset a run config names, with the training-size transform."""

from __future__ import annotations

from dcmfnet.data.base import ReferringDataset
from dcmfnet.data.benchmark import BenchmarkReferring
from dcmfnet.data.config import BenchmarkDataConfig, DataConfig, SyntheticDataConfig
from dcmfnet.data.expressions import KINDS
from dcmfnet.data.refer import MAX_TOKENS, ReferDataset
from dcmfnet.data.synthetic import SyntheticReferring
from dcmfnet.data.transforms import ReferringTransform
from dcmfnet.errors import SplitError

__all__ = ["BENCHMARK_MAX_TOKENS", "SYNTHETIC_MAX_TOKENS", "build_dataset", "max_tokens_for"]

#: Longest synthetic expression ("the small red circle on the left", 7 words) plus room for special tokens.
SYNTHETIC_MAX_TOKENS = 12
#: Longest benchmark expression ("the small white triangle to the left of the big blue cross", 12 words) + room.
BENCHMARK_MAX_TOKENS = 16


def max_tokens_for(cfg: DataConfig) -> int:
    """The expression length in tokens: ``cfg.max_tokens`` or the dataset's (15; 20 for G-Ref)."""
    if cfg.max_tokens is not None:
        return cfg.max_tokens
    if cfg.dataset in KINDS:
        return BENCHMARK_MAX_TOKENS
    return SYNTHETIC_MAX_TOKENS if cfg.dataset == "synthetic" else MAX_TOKENS[cfg.dataset]


def build_dataset(cfg: DataConfig, split: str, *, train: bool) -> ReferringDataset:
    """The dataset of ``split`` resized to ``cfg.image_size``.

    Args:
        cfg: the run config's ``data`` section.
        split: split name (``train``, ``val``, ``test``, ``testA`` …).
        train: enables the training augmentation (the left/right-swapping flip, if configured)
            and the ``max_train_samples`` cap; otherwise ``max_val_samples`` applies.

    Raises:
        SplitError: the dataset has no split ``split``.
    """
    transform = ReferringTransform(size=cfg.image_size, hflip_probability=cfg.hflip_probability if train else 0.0)
    limit = cfg.max_train_samples if train else cfg.max_val_samples
    if cfg.dataset in KINDS:
        return _benchmark(cfg, split, limit, transform)
    if cfg.dataset == "synthetic":
        syn = cfg.synthetic
        return SyntheticReferring(
            split=split,
            num_samples=_num_samples(syn, split, limit, "the synthetic dataset"),
            image_size=cfg.image_size,
            seed=syn.seed,
            min_objects=syn.min_objects,
            max_objects=syn.max_objects,
            size_probability=syn.size_probability,
            position_probability=syn.position_probability,
            transform=transform,
        )
    return ReferDataset(
        root=cfg.root,
        dataset=cfg.dataset,
        split=split,
        split_by=cfg.split_by,
        image_dir=cfg.image_dir,
        transform=transform,
        max_samples=limit,
        skip_unreadable=cfg.skip_unreadable,
    )


def _num_samples(options: SyntheticDataConfig | BenchmarkDataConfig, split: str, limit: int | None, name: str) -> int:
    """Samples of a procedural split: its configured size, capped by ``limit``; unknown splits are an error."""
    sizes = {"train": options.train_samples, "val": options.val_samples, "test": options.test_samples}
    if split not in sizes:
        raise SplitError(f"unknown split {split!r}; {name} has splits {sorted(sizes)}")
    return sizes[split] if limit is None else min(sizes[split], limit)


def _benchmark(cfg: DataConfig, split: str, limit: int | None, transform: ReferringTransform) -> BenchmarkReferring:
    """One kind of the built-in benchmark (``cfg.dataset``) with the options of ``cfg.benchmark``."""
    options = cfg.benchmark
    return BenchmarkReferring(
        kind=cfg.dataset,
        split=split,
        num_samples=_num_samples(options, split, limit, "the benchmark"),
        seed=options.seed,
        transform=transform,
        image_size=cfg.image_size,
        min_objects=options.min_objects,
        max_objects=options.max_objects,
        occlusion_probability=options.occlusion_probability,
        max_overlap=options.max_overlap,
        clutter=options.clutter,
        object_scale=options.object_scale,
    )
