"""The ``data`` section of a run config: which dataset, at which size.

It lives with the datasets (``dcmfnet.data.build`` reads it) and the run config
(:mod:`dcmfnet.train_config`) includes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BenchmarkDataConfig", "DataConfig", "SyntheticDataConfig"]


@dataclass
class SyntheticDataConfig:
    """The built-in dataset (:mod:`dcmfnet.data.synthetic`)."""

    train_samples: int = 20000
    val_samples: int = 500
    test_samples: int = 500
    seed: int = 0
    min_objects: int = 3
    max_objects: int = 5
    size_probability: float = 0.2
    position_probability: float = 0.2


@dataclass
class BenchmarkDataConfig:
    """The built-in benchmark (:mod:`dcmfnet.data.benchmark`): ``dataset`` ``refcoco_like``,
    ``refcocoplus_like`` or ``refcocog_like``."""

    train_samples: int = 8000
    val_samples: int = 500
    test_samples: int = 500
    seed: int = 0
    min_objects: int = 4
    max_objects: int = 8
    occlusion_probability: float = 0.5
    max_overlap: float = 0.45
    clutter: int = 4
    object_scale: float = 1.0


@dataclass
class DataConfig:
    """Which data, at which size.

    ``dataset`` is ``synthetic`` or a REFER dataset (``refcoco``, ``refcoco+``, ``refcocog``,
    ``refclef``) read from ``root`` (see :mod:`dcmfnet.data.refer`). ``max_tokens``
    ``None`` takes the dataset's length (15, 20 for G-Ref, 12 for synthetic).
    """

    dataset: str = "synthetic"
    root: str = "data/refer"
    split_by: str | None = None
    image_dir: str | None = None
    train_split: str = "train"
    val_split: str = "val"
    image_size: int = 480
    max_tokens: int | None = None
    hflip_probability: float = 0.0
    num_workers: int = 0
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    #: REFER sets: a sample whose image cannot be read is replaced by the next readable one (and reported)
    #: instead of stopping the run with the file's name and the sample's index.
    skip_unreadable: bool = False
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    benchmark: BenchmarkDataConfig = field(default_factory=BenchmarkDataConfig)
