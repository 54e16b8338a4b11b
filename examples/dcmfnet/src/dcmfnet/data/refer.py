"""Loader for the REFER toolkit's on-disk format: RefCOCO, RefCOCO+, G-Ref and ReferIt.

Layout (the REFER toolkit's, as the paper's datasets ship)::

    <root>/<dataset>/refs(<splitBy>).p     pickled list of refs: ref_id, ann_id, image_id, split,
                                          category_id, sent_ids, sentences[{tokens, raw, sent_id, sent}]
    <root>/<dataset>/instances.json        COCO format: images, annotations (polygon or RLE masks)
    <root>/images/mscoco/images/train2014/ images of refcoco, refcoco+, refcocog (by the image's file_name)
    <root>/images/saiapr_tc-12/            images of refclef (ReferIt)

Every sentence of a ref is a sample. A ref's own ``file_name`` is not the image's file name:
the image is found through ``instances.json``.

The refs file is a pickle (written by Python 2, protocol 2). It is read with an unpickler that
admits no global at all: the real files hold only lists, dicts, strings and numbers, which
pickle encodes without naming a class or function, so a file that names one (the only way a
pickle can run code) is refused before anything in it runs. Structural errors name the file
and the key (``refs(unc).p: ref 12 has no 'split'``).

An image that cannot be read (missing, truncated, not an image) stops the run with one line naming
the file and the sample index (:class:`UnreadableImageError`), also from a ``DataLoader`` worker.
With ``skip_unreadable=True`` (``data.skip_unreadable=true``) the sample is replaced by the next
readable one instead, and each skip is reported on stderr with the count so far.
"""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils

from dcmfnet.data.base import RawSample, ReferringDataset
from dcmfnet.data.transforms import ReferringTransform
from dcmfnet.errors import ImageReadError, InputError, SplitError

__all__ = [
    "DATASET_SPLITS",
    "DEFAULT_SPLIT_BY",
    "IMAGE_DIRS",
    "MAX_TOKENS",
    "ReferDataset",
    "ReferFormatError",
    "ReferSample",
    "UnreadableImageError",
    "decode_segmentation",
    "load_instances",
    "load_refs",
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


class ReferFormatError(InputError):
    """A REFER file is not what the toolkit writes (a refused pickle, a missing key); the message names both."""


class _PlainUnpickler(pickle.Unpickler):
    """Loads only what pickle encodes without a global: lists, dicts, tuples, strings, numbers, booleans, None."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"it names the global {module}.{name}, and a refs file holds only plain data")


#: Keys every ref must have, and every sentence of a ref.
_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")
_SENTENCE_KEYS = ("sent_id",)


def load_refs(path: Path) -> list[dict[str, Any]]:
    """Read a REFER ``refs(<splitBy>).p`` without running code from it, and check its structure.

    Raises:
        ReferFormatError: the file names a global (code), is not a pickle, is not a list of refs, or a ref
            lacks one of ``ref_id``, ``ann_id``, ``image_id``, ``split``, ``sentences`` (or a sentence its ``sent_id``).
    """
    try:
        with path.open("rb") as handle:
            refs = _PlainUnpickler(handle, encoding="utf-8").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as error:
        raise ReferFormatError(f"{path}: refused, not a plain-data REFER refs pickle: {error}") from None
    if not isinstance(refs, list):
        raise ReferFormatError(f"{path}: holds a {type(refs).__name__}, expected a list of refs")
    for index, ref in enumerate(refs):
        if not isinstance(ref, dict):
            raise ReferFormatError(f"{path}: ref #{index} is a {type(ref).__name__}, expected a dict")
        name = f"ref {ref['ref_id']}" if "ref_id" in ref else f"ref #{index}"
        for key in _REF_KEYS:
            if key not in ref:
                raise ReferFormatError(f"{path}: {name} has no {key!r}")
        if not isinstance(ref["sentences"], list):
            raise ReferFormatError(f"{path}: {name}'s 'sentences' is a {type(ref['sentences']).__name__}, not a list")
        for sentence in ref["sentences"]:
            if not isinstance(sentence, dict) or "sent_id" not in sentence:
                raise ReferFormatError(f"{path}: {name} has a sentence without 'sent_id': {sentence!r}")
    return refs


def load_instances(path: Path) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, Any]]]:
    """Read a COCO ``instances.json``; return its images and annotations by id.

    Raises:
        ReferFormatError: not JSON, not a dict, no ``images`` or ``annotations`` list, or an entry without ``id``
            (an image also needs ``file_name``, an annotation ``segmentation``).
    """
    try:
        with path.open() as handle:
            instances = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReferFormatError(f"{path}: not valid JSON: {error}") from None
    if not isinstance(instances, dict):
        raise ReferFormatError(f"{path}: holds a {type(instances).__name__}, expected a COCO dict")
    tables = {}
    for section, keys in (("images", ("id", "file_name")), ("annotations", ("id", "segmentation"))):
        entries = instances.get(section)
        if not isinstance(entries, list):
            found = "no" if entries is None else f"a {type(entries).__name__} as"
            raise ReferFormatError(f"{path}: has {found} {section!r}; a COCO instances file holds lists "
                                   "'images' and 'annotations'")  # fmt: skip
        for index, entry in enumerate(entries):
            missing = [key for key in keys if not isinstance(entry, dict) or key not in entry]
            if missing:
                raise ReferFormatError(f"{path}: {section}[{index}] has no {missing[0]!r}")
        tables[section] = {entry["id"]: entry for entry in entries}
    return tables["images"], tables["annotations"]


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


class UnreadableImageError(ImageReadError):
    """An image of a REFER split cannot be read; the message names the file, the sample index and the ref.

    Raised in a ``DataLoader`` worker, it reaches the main process as PyTorch re-raises it: a new
    exception of this class whose message is the worker's whole traceback. This class keeps the
    original one-line message of that traceback, so the command still prints one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_original_message(message, type(self).__name__))


def _original_message(message: str, name: str) -> str:
    """The message raised in a DataLoader worker, taken back out of PyTorch's re-raised traceback text."""
    if not message.startswith("Caught ") or "Original Traceback" not in message:
        return message
    for line in reversed(message.splitlines()):
        head, separator, rest = line.partition(": ")
        if separator and head.rsplit(".", 1)[-1] == name:
            return rest
    return message


#: What Pillow raises for a file it cannot decode (a truncated or damaged file, a non-image, a bomb).
_DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


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
        skip_unreadable: replace a sample whose image cannot be read by the next readable one (and say
            so on stderr, with the count so far) instead of raising :class:`UnreadableImageError`.

    Raises:
        FileNotFoundError: the root or one of the layout's files is missing (the message shows the
            expected layout).
        ReferFormatError: (a ``ValueError``) a file is refused (see :func:`load_refs`, :func:`load_instances`),
            a ref names an annotation or image that ``instances.json`` lacks, or a sentence is empty.
        SplitError: the split does not exist.
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
        skip_unreadable: bool = False,
    ) -> None:
        super().__init__(transform=transform)
        self.skip_unreadable = skip_unreadable
        #: Sample indices found unreadable so far by this process (with ``skip_unreadable``).
        self.unreadable: set[int] = set()
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
        refs = load_refs(refs_path)
        self.images, self.annotations = load_instances(instances_path)
        available = sorted({ref["split"] for ref in refs})
        if split not in available:
            raise SplitError(f"split {split!r} not in {refs_path}; it has {available}")
        samples: list[ReferSample] = []
        for ref in refs:
            if ref["split"] != split:
                continue
            if ref["ann_id"] not in self.annotations:
                raise ReferFormatError(
                    f"{refs_path}: ref {ref['ref_id']} names annotation {ref['ann_id']}, missing from {instances_path}"
                )
            if ref["image_id"] not in self.images:
                raise ReferFormatError(
                    f"{refs_path}: ref {ref['ref_id']} names image {ref['image_id']}, missing from {instances_path}"
                )
            for sentence in ref["sentences"]:
                text = str(sentence.get("sent") or sentence.get("raw") or "").strip()
                if not text:
                    raise ReferFormatError(
                        f"{refs_path}: ref {ref['ref_id']} has an empty sentence (sent_id {sentence['sent_id']})"
                    )
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

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        if not self.skip_unreadable:
            return self.to_item(self.raw(index), index)
        for offset in range(len(self)):  # the next readable sample stands in; its own index goes with it
            candidate = (index + offset) % len(self)
            if candidate in self.unreadable:
                continue
            try:
                return self.to_item(self.raw(candidate), candidate)
            except UnreadableImageError as error:
                self.unreadable.add(candidate)
                print(f"skipped unreadable sample ({len(self.unreadable)} so far in this process): {error}",
                      file=sys.stderr, flush=True)  # fmt: skip
        raise UnreadableImageError(f"no image of {self.dataset} {self.split} ({len(self)} samples) can be read")

    def image_path(self, index: int) -> Path:
        """Path of the image of sample ``index`` (from ``instances.json``'s ``file_name``)."""
        return self.image_dir / self.images[self.samples[index].image_id]["file_name"]

    def raw(self, index: int) -> RawSample:
        """Sample ``index`` at its original size.

        Raises:
            UnreadableImageError: the image file is missing or cannot be decoded.
        """
        sample = self.samples[index]
        info = self.images[sample.image_id]
        path = self.image_path(index)
        try:
            with Image.open(path) as handle:
                image = np.array(handle.convert("RGB"))
        except _DECODE_ERRORS as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise UnreadableImageError(
                f"cannot read image {path} (sample {index} of {self.dataset} {self.split}, ref {sample.ref_id}): "
                f"{reason}; replace the file, or set data.skip_unreadable=true to skip such samples"
            ) from error
        height, width = image.shape[:2]
        if (info.get("height"), info.get("width")) not in {(height, width), (None, None)}:
            raise ValueError(
                f"image {path} is {width}x{height} but instances.json says {info.get('width')}x{info.get('height')}"
            )
        mask = decode_segmentation(self.annotations[sample.ann_id]["segmentation"], height, width)
        return RawSample(image=image, mask=mask, expression=sample.sentence, image_id=str(info["file_name"]))
