"""Referring-segmentation data: the built-in synthetic dataset and benchmark, and the REFER-format loader."""

from dcmfnet.data.base import (
    RawSample,
    ReferringBatch,
    ReferringDataset,
    ShuffledExpressions,
    collate_referring,
)
from dcmfnet.data.benchmark import BenchmarkReferring
from dcmfnet.data.refer import ReferDataset, decode_segmentation
from dcmfnet.data.synthetic import VOCABULARY, SyntheticReferring, generate_scene
from dcmfnet.data.transforms import ReferringTransform, swap_left_right

__all__ = [
    "VOCABULARY",
    "BenchmarkReferring",
    "RawSample",
    "ReferDataset",
    "ReferringBatch",
    "ReferringDataset",
    "ReferringTransform",
    "ShuffledExpressions",
    "SyntheticReferring",
    "collate_referring",
    "decode_segmentation",
    "generate_scene",
    "swap_left_right",
]
