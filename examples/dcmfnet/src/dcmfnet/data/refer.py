"""Loader for the REFER toolkit's on-disk format: RefCOCO, RefCOCO+, G-Ref and ReferIt.

Layout (SPEC §3)::

    <root>/<dataset>/refs(<splitBy>).p     pickled list of refs: ref_id, ann_id, image_id, split,
                                          category_id, sent_ids, sentences[{tokens, raw, sent_id, sent}]
    <root>/<dataset>/instances.json        COCO format: images, annotations (polygon or RLE masks)
    <root>/images/mscoco/images/train2014/ images of refcoco, refcoco+, refcocog (by the image's file_name)
    <root>/images/saiapr_tc-12/            images of refclef (ReferIt)

Every sentence of a ref is a sample. A ref's own ``file_name`` is not the image's file name:
the image is found through ``instances.json``.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from dcmfnet.data.base import RawSample, ReferringDataset
from dcmfnet.data.transforms import ReferringTransform

__all__ = [
    "DATASET_SPLITS",
    "DEFAULT_SPLIT_BY",
    "IMAGE_DIRS",
    "MAX_TOKENS",
    "ReferDataset",
    "ReferSample",
    "decode_segmentation",
]

#: Image folder of each dataset, relative to the data root.
IMAGE_DIRS: dict[str, str] = {
    "refcoco": "images/mscoco/images/train2014",
    "refcoco+": "images/mscoco/images/train2014",
    "refcocog": "images/mscoco/images/train2014",
    "refclef": "images/saiapr_tc-12",
}
#: Maximum expression length in tokens (paper §4.1: 15, and 20 for G-Ref).
MAX_TOKENS: dict[str, int] = {"refcoco": 15, "refcoco+": 15, "refcocog": 20, "refclef": 15}
DEFAULT_SPLIT_BY: dict[str, str] = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "refclef": "unc"}
#: Splits each (dataset, splitBy) defines.
DATASET_SPLITS: dict[tuple[str, str], tuple[str, ...]] = {
    ("refcoco", "unc"): ("train", "val", "testA", "testB"),
    ("refcoco+", "unc"): ("train", "val", "testA", "testB"),
    ("refcocog", "umd"): ("train", "val", "test"),
    ("refcocog", "google"): ("train", "val"),
    ("refclef", "unc"): ("train", "val", "test"),
    ("refclef", "berkeley"): ("train", "val", "test"),
}


@dataclass(frozen=True)
class ReferSample:
    """One (ref, sentence) pair: what a dataset index points at."""

    ref_id: int
    ann_id: int
    image_id: int
    sent_id: int
    sentence: str


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation (polygon list, uncompressed or compressed RLE) to an ``(H, W)`` bool mask."""
    if isinstance(segmentation, list):
        if not segmentation:
            raise ValueError("empty polygon list")
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"unsupported segmentation of type {type(segmentation).__name__}")
    mask = mask_utils.decode(rle)
    if mask.ndim == 3:  # several polygons decoded separately
        mask = mask.max(axis=2)
    return mask.astype(bool)


def _layout_help(root: Path, dataset: str, split_by: str) -> str:
    return (
        "expected the REFER layout:\n"
        f"  {root / dataset / f'refs({split_by}).p'}\n"
        f"  {root / dataset / 'instances.json'}\n"
        f"  {root / IMAGE_DIRS.get(dataset, 'images')}/<image file_name>"
    )


class ReferDataset(ReferringDataset):
    """Every sentence of every ref of one split of a REFER dataset.

    Args:
        root: the data root (holds ``<dataset>/`` and ``images/``).
        dataset: ``"refcoco"``, ``"refcoco+"``, ``"refcocog"`` or ``"refclef"``.
        split: a split of that dataset (e.g. ``"val"``, ``"testA"``).
        split_by: ``"unc"``, ``"umd"``, ``"google"`` or ``"berkeley"``; ``None`` takes the dataset's usual one.
        image_dir: image folder; ``None`` takes ``root / IMAGE_DIRS[dataset]``.
        transform: applied to each raw sample.
        max_samples: keep only the first samples (for quick runs); ``None`` keeps all.

    Raises:
        FileNotFoundError: the root or one of the layout's files is missing (the message shows the
            expected layout).
        ValueError: the split does not exist, a ref names an annotation or image that
            ``instances.json`` lacks, or a sentence is empty.
    """

    def __init__(
        self,
        *,
        root: str | Path,
        dataset: str,
        split: str,
        split_by: str | None = None,
        image_dir: str | Path | None = None,
        transform: ReferringTransform | None = None,
        max_samples: int | None = None,
    ) -> None:
        super().__init__(transform=transform)
        if dataset not in IMAGE_DIRS:
            raise ValueError(f"unknown REFER dataset {dataset!r}; expected one of {sorted(IMAGE_DIRS)}")
        root = Path(root)
        split_by = split_by or DEFAULT_SPLIT_BY[dataset]
        self.root, self.dataset, self.split, self.split_by = root, dataset, split, split_by
        self.image_dir = Path(image_dir) if image_dir is not None else root / IMAGE_DIRS[dataset]
        self.max_tokens = MAX_TOKENS[dataset]
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root} does not exist; {_layout_help(root, dataset, split_by)}")
        refs_path = root / dataset / f"refs({split_by}).p"
        instances_path = root / dataset / "instances.json"
        for path in (refs_path, instances_path):
            if not path.is_file():
                raise FileNotFoundError(f"missing {path}; {_layout_help(root, dataset, split_by)}")
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"missing image folder {self.image_dir}; {_layout_help(root, dataset, split_by)}")
        with refs_path.open("rb") as handle:
            refs = pickle.load(handle)
        with instances_path.open() as handle:
            instances = json.load(handle)
        if not isinstance(refs, list) or not {"images", "annotations"} <= set(instances):
            raise ValueError(
                f"{refs_path} must hold a list of refs and {instances_path} a COCO dict with 'images' and 'annotations'"
            )
        self.images: dict[int, dict[str, Any]] = {image["id"]: image for image in instances["images"]}
        self.annotations: dict[int, dict[str, Any]] = {ann["id"]: ann for ann in instances["annotations"]}
        available = sorted({ref["split"] for ref in refs})
        if split not in available:
            raise ValueError(f"split {split!r} not in {refs_path}; it has {available}")
        samples: list[ReferSample] = []
        for ref in refs:
            if ref["split"] != split:
                continue
            if ref["ann_id"] not in self.annotations:
                raise ValueError(f"ref {ref['ref_id']} names annotation {ref['ann_id']}, missing from {instances_path}")
            if ref["image_id"] not in self.images:
                raise ValueError(f"ref {ref['ref_id']} names image {ref['image_id']}, missing from {instances_path}")
            for sentence in ref["sentences"]:
                text = str(sentence.get("sent") or sentence.get("raw") or "").strip()
                if not text:
                    raise ValueError(f"ref {ref['ref_id']} has an empty sentence (sent_id {sentence.get('sent_id')})")
                samples.append(
                    ReferSample(
                        ref_id=int(ref["ref_id"]),
                        ann_id=int(ref["ann_id"]),
                        image_id=int(ref["image_id"]),
                        sent_id=int(sentence["sent_id"]),
                        sentence=text,
                    )
                )
        if max_samples is not None:
            samples = samples[:max_samples]
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def expression(self, index: int) -> str:
        return self.samples[index].sentence

    def image_path(self, index: int) -> Path:
        """Path of the image of sample ``index`` (from ``instances.json``'s ``file_name``)."""
        return self.image_dir / self.images[self.samples[index].image_id]["file_name"]

    def raw(self, index: int) -> RawSample:
        sample = self.samples[index]
        info = self.images[sample.image_id]
        path = self.image_path(index)
        try:
            with Image.open(path) as handle:
                image = np.array(handle.convert("RGB"))
        except (OSError, UnidentifiedImageError) as error:
            raise OSError(f"cannot read image {path} (ref {sample.ref_id}): {error}") from error
        height, width = image.shape[:2]
        if (info.get("height"), info.get("width")) not in {(height, width), (None, None)}:
            raise ValueError(
                f"image {path} is {width}x{height} but instances.json says {info.get('width')}x{info.get('height')}"
            )
        mask = decode_segmentation(self.annotations[sample.ann_id]["segmentation"], height, width)
        return RawSample(image=image, mask=mask, expression=sample.sentence, image_id=str(info["file_name"]))
