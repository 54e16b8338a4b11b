"""The REFER-format loader on a tiny fixture in exactly that on-disk format."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dcmfnet.data import ReferDataset, ReferringTransform
from dcmfnet.data.refer import MAX_TOKENS, ReferFormatError
from dcmfnet.metrics import ReferringMetrics
from tests.dcmfnet.fixtures_refer import make_refer_fixture, python2_pickle


@pytest.fixture(scope="module")
def refer_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, np.ndarray]]:
    root = tmp_path_factory.mktemp("refer")
    return root, make_refer_fixture(root)


def test_every_sentence_is_a_sample_and_masks_decode(refer_root: tuple[Path, dict[int, np.ndarray]]) -> None:
    root, masks = refer_root
    for split, refs in {"train": 4, "val": 4, "testA": 2, "testB": 2}.items():
        ds = ReferDataset(root=root, dataset="refcoco", split=split)
        assert len(ds) == 2 * refs  # two sentences per ref
        assert ds.max_tokens == MAX_TOKENS["refcoco"] == 15
        for i in range(len(ds)):
            raw = ds.raw(i)
            expected = masks[ds.samples[i].ann_id]
            assert raw.mask.dtype == bool and np.array_equal(raw.mask, expected)  # polygon, RLE and raw RLE
            assert raw.image.shape[:2] == expected.shape
            assert raw.image_id.startswith("COCO_train2014_") and raw.expression == ds.expression(i)
    assert MAX_TOKENS["refcocog"] == 20


def test_ground_truth_as_prediction_scores_one(refer_root: tuple[Path, dict[int, np.ndarray]]) -> None:
    root, _ = refer_root
    ds = ReferDataset(root=root, dataset="refcoco", split="val", transform=ReferringTransform(size=32))
    metrics = ReferringMetrics()
    for i in range(len(ds)):
        item = ds[i]
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
        metrics.update([item["original_mask"]], [item["original_mask"]], [item["index"]])
    result = metrics.compute()
    assert result["overall_iou"] == 1.0 and result["mean_iou"] == 1.0 and result["precision@0.9"] == 1.0
    assert result["num_samples"] == len(ds) == 8


def test_missing_root_and_wrong_layout_say_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="expected the REFER layout"):
        ReferDataset(root=tmp_path / "nowhere", dataset="refcoco", split="val")
    (tmp_path / "refcoco").mkdir()
    with pytest.raises(FileNotFoundError, match=r"refs\(unc\)\.p"):
        ReferDataset(root=tmp_path, dataset="refcoco", split="val")
    with pytest.raises(ValueError, match="unknown REFER dataset"):
        ReferDataset(root=tmp_path, dataset="coco", split="val")


def test_bad_split_missing_annotation_unreadable_image_empty_sentence(tmp_path: Path) -> None:
    make_refer_fixture(tmp_path)
    with pytest.raises(ValueError, match="split 'test' not in"):
        ReferDataset(root=tmp_path, dataset="refcoco", split="test")
    refs_path = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    # unreadable image: the error names the file
    image_dir = tmp_path / "images" / "mscoco" / "images" / "train2014"
    victim = sorted(image_dir.iterdir())[2]  # image 3 is in val
    victim.write_bytes(b"not a jpeg")
    ds = ReferDataset(root=tmp_path, dataset="refcoco", split="val")
    with pytest.raises(OSError, match=victim.name):
        ds.raw(0)
    # empty sentence
    refs[4]["sentences"][0]["sent"] = "  "
    refs_path.write_bytes(pickle.dumps(refs))
    with pytest.raises(ValueError, match="empty sentence"):
        ReferDataset(root=tmp_path, dataset="refcoco", split="val")
    # a ref whose annotation is missing
    refs[4]["sentences"][0]["sent"] = "fine"
    refs[4]["ann_id"] = 999
    refs_path.write_bytes(pickle.dumps(refs))
    with pytest.raises(ValueError, match="annotation 999"):
        ReferDataset(root=tmp_path, dataset="refcoco", split="val")
    json.loads((tmp_path / "refcoco" / "instances.json").read_text())  # the fixture's json is plain COCO


class _Touch:
    """Pickles to "call open(path, 'w')": what a tampered refs file could run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_refs_pickle_that_would_run_code_is_refused_before_it_runs(tmp_path: Path, protocol: int) -> None:
    make_refer_fixture(tmp_path)
    refs_path = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    marker = tmp_path / "owned"
    refs[0]["split"] = _Touch(marker)
    refs_path.write_bytes(pickle.dumps(refs, protocol=protocol))
    with pytest.raises(ReferFormatError, match=r"refs\(unc\)\.p: refused.*names the global io\.open"):
        ReferDataset(root=tmp_path, dataset="refcoco", split="val")
    assert not marker.exists()


def test_python2_refs_load_as_plain_data(tmp_path: Path) -> None:
    make_refer_fixture(tmp_path)  # written as Python 2's cPickle does (protocol 2, byte strings)
    refs_path = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_path.read_bytes())
    refs[4]["sentences"][0]["sent"] = "the caf\u00e9 sign"  # UTF-8 bytes in a Python 2 str
    refs_path.write_bytes(python2_pickle(refs))
    ds = ReferDataset(root=tmp_path, dataset="refcoco", split="val")
    assert ds.expression(0) == "the caf\u00e9 sign" and len(ds) == 8


def _drop_split(root: Path) -> None:
    path = root / "refcoco" / "refs(unc).p"
    refs = pickle.loads(path.read_bytes())
    del refs[3]["split"]
    path.write_bytes(python2_pickle(refs))


def _refs_as_dict(root: Path) -> None:
    path = root / "refcoco" / "refs(unc).p"
    path.write_bytes(python2_pickle({"refs": pickle.loads(path.read_bytes())}))


def _drop_annotations(root: Path) -> None:
    path = root / "refcoco" / "instances.json"
    instances = json.loads(path.read_text())
    del instances["annotations"]
    path.write_text(json.dumps(instances))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_drop_split, r"refcoco/refs\(unc\)\.p: ref 2100 has no 'split'"),
        (_refs_as_dict, r"refcoco/refs\(unc\)\.p: holds a dict, expected a list of refs"),
        (_drop_annotations, r"refcoco/instances\.json: has no 'annotations'"),
    ],
)
def test_structural_errors_name_the_file_and_the_key(tmp_path: Path, damage: Any, message: str) -> None:
    make_refer_fixture(tmp_path)
    damage(tmp_path)
    with pytest.raises(ReferFormatError, match=message):
        ReferDataset(root=tmp_path, dataset="refcoco", split="val")
