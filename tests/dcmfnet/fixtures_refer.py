"""Builds a tiny dataset in the REFER toolkit's exact on-disk format (see dcmfnet.data.refer), for tests.

``make_refer_fixture(root)`` writes::

    root/refcoco/refs(unc).p        list of refs (train/val/testA/testB), pickled as Python 2 does
    root/refcoco/instances.json     COCO json: polygon, compressed-RLE and uncompressed-RLE masks
    root/images/mscoco/images/train2014/COCO_train2014_<id>.jpg

and returns the ground-truth masks it drew, by annotation id, to compare with the loader's.
A ref's own ``file_name`` deliberately differs from its image's (as in the real refs files).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = ["make_refer_fixture", "python2_pickle"]

_SPLITS = ("train", "train", "val", "val", "testA", "testB")


def _uncompressed_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO's uncompressed RLE: column-major run lengths starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = int(value), 1
    counts.append(run)
    return {"counts": counts, "size": [int(mask.shape[0]), int(mask.shape[1])]}


def python2_pickle(value: object) -> bytes:
    """``value`` pickled as Python 2's cPickle writes the REFER refs files (protocol 2).

    Byte strings (``str`` in Python 2) as SHORT_BINSTRING/BINSTRING, numbers as BININT/BINFLOAT,
    containers with MARK ... APPENDS/SETITEMS and a memo entry (BINPUT) each; no global is named.
    """
    out = bytearray(b"\x80\x02")
    memo = [0]

    def put() -> None:
        out.extend(b"q" + bytes([memo[0]]) if memo[0] < 256 else b"r" + struct.pack("<I", memo[0]))
        memo[0] += 1

    def emit(item: object) -> None:
        if item is None:
            out.extend(b"N")
        elif isinstance(item, bool):
            out.extend(b"\x88" if item else b"\x89")
        elif isinstance(item, int):
            out.extend(b"J" + struct.pack("<i", item))
        elif isinstance(item, float):
            out.extend(b"G" + struct.pack(">d", item))
        elif isinstance(item, str):
            data = item.encode("utf-8")
            out.extend(b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data)))
            out.extend(data)
            put()
        elif isinstance(item, list):
            out.extend(b"]")
            put()
            if item:
                out.extend(b"(")
                for element in item:
                    emit(element)
                out.extend(b"e")
        elif isinstance(item, dict):
            out.extend(b"}")
            put()
            if item:
                out.extend(b"(")
                for key, element in item.items():
                    emit(key)
                    emit(element)
                out.extend(b"u")
        else:
            raise TypeError(f"cannot write {type(item).__name__} as Python 2 would here")

    emit(value)
    return bytes(out + b".")


def make_refer_fixture(root: Path, *, dataset: str = "refcoco", split_by: str = "unc") -> dict[int, np.ndarray]:
    """Write the fixture under ``root``; return ``{ann_id: (H, W) bool mask}``."""
    rng = np.random.default_rng(0)
    image_dir = root / "images" / "mscoco" / "images" / "train2014"
    image_dir.mkdir(parents=True, exist_ok=True)
    (root / dataset).mkdir(parents=True, exist_ok=True)
    images, annotations, refs = [], [], []
    masks: dict[int, np.ndarray] = {}
    sent_id = 0
    for image_id, split in enumerate(_SPLITS, start=1):
        height, width = 40 + 4 * image_id, 56 - 2 * image_id  # every image its own size
        file_name = f"COCO_train2014_{image_id:012d}.jpg"
        pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image_dir / file_name, quality=95)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for k in range(2):  # two annotated objects per image, two refs
            ann_id = image_id * 10 + k
            x0, y0 = 3 + 18 * k, 4 + k
            x1, y1 = x0 + 12, y0 + 15 + image_id
            kind = (image_id + k) % 3
            if kind == 0:  # polygon: a rectangle as two triangles (a list of polygons)
                segmentation: object = [
                    [x0, y0, x1, y0, x1, y1],
                    [x0, y0, x1, y1, x0, y1],
                ]
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
                mask = mask_utils.decode(rle).astype(bool)
            else:
                mask = np.zeros((height, width), dtype=bool)
                yy, xx = np.mgrid[0:height, 0:width]
                mask[(xx - (x0 + x1) / 2) ** 2 / 36 + (yy - (y0 + y1) / 2) ** 2 / 64 <= 1] = True
                if kind == 1:  # compressed RLE, counts as str (as COCO json stores it)
                    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                    segmentation = {"counts": encoded["counts"].decode("ascii"), "size": [height, width]}
                else:  # uncompressed RLE
                    segmentation = _uncompressed_rle(mask)
            masks[ann_id] = mask
            ys, xs = np.nonzero(mask)
            bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1 + k,
                    "segmentation": segmentation,
                    "area": float(mask.sum()),
                    "bbox": bbox,
                    "iscrowd": 0,
                }
            )
            sentences = []
            for text in (f"object {k} of image {image_id}", f"the {'left' if k == 0 else 'right'} thing"):
                sentences.append(
                    {"tokens": text.split(), "raw": text.capitalize() + ".", "sent_id": sent_id, "sent": text}
                )
                sent_id += 1
            refs.append(
                {
                    "ref_id": ann_id * 100,
                    "ann_id": ann_id,
                    "image_id": image_id,
                    "split": split,
                    "category_id": 1 + k,
                    "sent_ids": [s["sent_id"] for s in sentences],
                    "sentences": sentences,
                    "file_name": f"COCO_train2014_{image_id:012d}_{ann_id}.jpg",  # not the image's name
                }
            )
    (root / dataset / f"refs({split_by}).p").write_bytes(python2_pickle(refs))
    categories = [{"id": 1, "name": "thing"}, {"id": 2, "name": "other"}]
    with (root / dataset / "instances.json").open("w") as handle:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, handle)
    return masks
