"""The sample format shared by every referring-segmentation dataset of the example.

A dataset yields one *(image, expression)* pair per index. It knows how to
produce the raw pair (:meth:`ReferringDataset.raw`: the image at its original
size, the binary ground-truth mask and the expression) and applies a
:class:`~dcmfnet.data.transforms.ReferringTransform` to turn it into
tensors at the training size. The original-size mask travels with the sample
because the metrics are scored at the original resolution (paper §4.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

if TYPE_CHECKING:
    from dcmfnet.data.transforms import ReferringTransform

__all__ = ["RawSample", "ReferringBatch", "ReferringDataset", "ShuffledExpressions", "collate_referring"]


@dataclass(frozen=True)
class RawSample:
    """One (image, expression) pair before any transform.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB array at the original size.
        mask: ``(H, W)`` bool array, the referred object.
        expression: the referring expression.
        image_id: an identifier of the image (file name or scene id), for logs and galleries.
    """

    image: np.ndarray
    mask: np.ndarray
    expression: str
    image_id: str


class ReferringDataset(Dataset[dict[str, Any]]):
    """Base class: subclasses implement ``__len__``, :meth:`raw` and :meth:`expression`.

    Args:
        transform: maps a :class:`RawSample` to tensors at the training size; ``None`` returns the
            image and mask as tensors at their original size.

    Each item is a dict:
        ``image`` ``(3, H, W)`` float, ``mask`` ``(1, H, W)`` float in {0, 1},
        ``original_mask`` ``(H0, W0)`` bool, ``expression`` str, ``index`` int, ``image_id`` str.
    """

    def __init__(self, *, transform: ReferringTransform | None = None) -> None:
        self.transform = transform

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def raw(self, index: int) -> RawSample:  # pragma: no cover - abstract
        """Return the untransformed sample ``index``."""
        raise NotImplementedError

    def expression(self, index: int) -> str:
        """Return the expression of sample ``index`` (cheaper than :meth:`raw` where possible)."""
        return self.raw(index).expression

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        sample = self.raw(index)
        return self.to_item(sample, index)

    def to_item(self, sample: RawSample, index: int) -> dict[str, Any]:
        """Turn a raw sample into the tensors a model consumes."""
        original_mask = torch.from_numpy(np.ascontiguousarray(sample.mask, dtype=bool))
        if self.transform is not None:
            image, mask, expression = self.transform(sample.image, sample.mask, sample.expression)
        else:
            image = torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float() / 255.0
            mask = original_mask[None].float()
            expression = sample.expression
        return {
            "image": image,
            "mask": mask,
            "original_mask": original_mask,
            "expression": expression,
            "index": index,
            "image_id": sample.image_id,
        }


class ShuffledExpressions(Dataset[dict[str, Any]]):
    """The language-reliance control: every sample gets another sample's expression.

    The expressions are permuted by a derangement (a random cyclic order), so no sample keeps its
    own expression; images and masks are unchanged. A model that ignores language scores the
    same with and without the shuffle.

    Args:
        dataset: the dataset to wrap.
        seed: seed of the permutation.
    """

    def __init__(self, dataset: ReferringDataset, *, seed: int = 0) -> None:
        self.dataset = dataset
        n = len(dataset)
        order = np.random.default_rng(seed).permutation(n)
        source = np.empty(n, dtype=np.int64)
        source[order] = np.roll(order, -1)  # order[k] takes the expression of order[k + 1]
        self.source = source

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset.to_item(self.raw(index), index)

    def to_item(self, sample: RawSample, index: int) -> dict[str, Any]:
        """Turn a raw sample into tensors, as the wrapped dataset does."""
        return self.dataset.to_item(sample, index)

    def raw(self, index: int) -> RawSample:
        """Return sample ``index`` with its shuffled expression."""
        sample = self.dataset.raw(index)
        other = self.dataset.expression(int(self.source[index])) if len(self) > 1 else sample.expression
        return RawSample(image=sample.image, mask=sample.mask, expression=other, image_id=sample.image_id)


class ReferringBatch(NamedTuple):
    """A collated batch.

    Attributes:
        images: ``(B, 3, H, W)`` float.
        masks: ``(B, 1, H, W)`` float targets at the training size.
        original_masks: ``B`` bool masks ``(H0_i, W0_i)`` at each image's original size.
        expressions: ``B`` strings.
        indices: ``(B,)`` long dataset indices (used to count every sample once across ranks).
        image_ids: ``B`` strings.
    """

    images: torch.Tensor
    masks: torch.Tensor
    original_masks: list[torch.Tensor]
    expressions: list[str]
    indices: torch.Tensor
    image_ids: list[str]


def collate_referring(items: list[dict[str, Any]]) -> ReferringBatch:
    """Stack a list of dataset items into a :class:`ReferringBatch`."""
    return ReferringBatch(
        images=torch.stack([item["image"] for item in items]),
        masks=torch.stack([item["mask"] for item in items]),
        original_masks=[item["original_mask"] for item in items],
        expressions=[item["expression"] for item in items],
        indices=torch.tensor([item["index"] for item in items], dtype=torch.long),
        image_ids=[item["image_id"] for item in items],
    )
