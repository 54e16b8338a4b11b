"""The Python inference API: load once, segment many; masks at the original size in the viewer's orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from dcmfnet.commands import predict
from dcmfnet.config import build_model
from dcmfnet.data import SyntheticReferring
from dcmfnet.errors import InputError
from dcmfnet.inference import Segmentation, Segmenter
from dcmfnet.pretrained import PretrainedConfig, save_pretrained
from tests.dcmfnet.test_images import exif_rotated_jpeg
from tests.dcmfnet.tiny_run import tiny_config

MAX_TOKENS = 6


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    torch.manual_seed(0)
    model = build_model(tiny_config().model)
    return Segmenter(model, image_size=32, max_tokens=MAX_TOKENS, device="cpu")


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, str]:
    raw = SyntheticReferring(split="test", num_samples=1, image_size=40).raw(0)
    return raw.image[:, :36], raw.expression  # not square, not the model's size


def test_one_expression_gives_a_mask_at_the_original_size(segmenter: Segmenter, scene: tuple) -> None:
    image, expression = scene
    result = segmenter.segment(image, expression)
    assert isinstance(result, Segmentation) and result.expression == expression
    assert result.mask.shape == (40, 36) and result.mask.dtype == np.bool_
    assert result.probabilities is None and result.stage_maps is None and result.fusion_maps is None
    assert result.warnings == ()
    detailed = segmenter.segment(image, expression, return_probabilities=True, return_maps=True)
    assert np.array_equal(detailed.mask, result.mask)
    probabilities = detailed.probabilities
    assert probabilities is not None and probabilities.shape == (40, 36) and probabilities.dtype == np.float32
    assert np.array_equal(probabilities >= 0.5, result.mask)
    assert detailed.stage_maps is not None and set(detailed.stage_maps) == {"LGVE-1", "LGVE-2", "MLFF"}
    assert detailed.fusion_maps is not None and set(detailed.fusion_maps) == {"e3", "e4", "enc", "dec"}
    assert all(len(fusions) == 2 and fusions[0].shape[0] == 1 for fusions in detailed.fusion_maps.values())


def test_several_expressions_in_one_batch_match_one_at_a_time(segmenter: Segmenter, scene: tuple) -> None:
    image, expression = scene
    expressions = [expression, "the small blue square", "the big red circle"]
    batch = segmenter.segment(image, expressions, return_probabilities=True)
    assert [r.expression for r in batch] == expressions
    for result in batch:
        single = segmenter.segment(image, result.expression, return_probabilities=True)
        assert single.probabilities is not None and result.probabilities is not None
        np.testing.assert_allclose(result.probabilities, single.probabilities, atol=1e-5)


def test_paths_pil_images_and_arrays_agree(segmenter: Segmenter, scene: tuple, tmp_path: Path) -> None:
    image, expression = scene
    Image.fromarray(image).save(tmp_path / "scene.png")
    expected = segmenter.segment(image, expression).mask
    for source in (tmp_path / "scene.png", str(tmp_path / "scene.png"), Image.fromarray(image)):
        assert np.array_equal(segmenter.segment(source, expression).mask, expected)
    opaque = np.concatenate([image, np.full((*image.shape[:2], 1), 255, np.uint8)], axis=2)
    assert np.array_equal(segmenter.segment(opaque, expression).mask, expected)
    grey = image[..., 1]
    assert segmenter.segment(grey, expression).mask.shape == grey.shape
    with pytest.raises(TypeError, match="path, a PIL image or a numpy array"):
        segmenter.segment(image.tolist(), expression)  # type: ignore[arg-type]


def test_exif_rotated_photo_gets_its_mask_in_the_viewers_orientation(segmenter: Segmenter, tmp_path: Path) -> None:
    exif_rotated_jpeg(tmp_path / "photo.jpg")
    result = segmenter.segment(tmp_path / "photo.jpg", "the red circle", return_probabilities=True)
    assert result.mask.shape == (48, 32)  # stored 48 wide x 32 high, shown 32 wide x 48 high
    with Image.open(tmp_path / "photo.jpg") as handle:
        upright = np.array(ImageOps.exif_transpose(handle).convert("RGB"))
    same = segmenter.segment(upright, "the red circle", return_probabilities=True)
    assert np.array_equal(result.mask, same.mask)


def test_empty_expressions_and_undecodable_files_are_clear_errors(
    segmenter: Segmenter, scene: tuple, tmp_path: Path
) -> None:
    image, _ = scene
    with pytest.raises(InputError, match="expression is empty"):
        segmenter.segment(image, "   ")
    with pytest.raises(InputError, match=r"empty \(position 1\)"):
        segmenter.segment(image, ["the red circle", ""])
    with pytest.raises(InputError, match="no expression"):
        segmenter.segment(image, [])
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(OSError, match=r"broken\.jpg"):
        segmenter.segment(tmp_path / "broken.jpg", "the red circle")


def test_long_and_unknown_expressions_warn_what_was_lost(segmenter: Segmenter, scene: tuple) -> None:
    image, _ = scene
    long, unknown, partly = segmenter.segment(
        image, ["the small red circle at the top left", "zebra under umbrella", "the mauve circle"]
    )
    # MAX_TOKENS=6: [CLS] and five words are read, the last three dropped
    assert len(long.warnings) == 1 and 'dropped: "top left"' not in long.warnings[0]
    assert 'dropped: "the top left"' in long.warnings[0] and "max_tokens=6" in long.warnings[0]
    assert len(unknown.warnings) == 1 and 'no word of "zebra under umbrella"' in unknown.warnings[0]
    assert partly.warnings == ("words the word encoder does not know, read as [UNK]: mauve",)


def test_predict_reports_the_warnings_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    cfg = tiny_config()
    save_pretrained(
        build_model(cfg.model), tmp_path / "model", PretrainedConfig(model=cfg.model, image_size=32, max_tokens=4)
    )
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(tmp_path / "black.png")
    args = ["--model", str(tmp_path / "model"), "--image", str(tmp_path / "black.png"), "--device", "cpu"]
    out = ["--output", str(tmp_path / "out.png"), "--mask-output", str(tmp_path / "mask.png")]
    assert predict.main([*args, "--expression", "the big red zebra circle", *out]) == 0
    err = capsys.readouterr().err
    assert "warning: words the word encoder does not know, read as [UNK]: zebra" in err
    assert 'dropped: "zebra circle"' in err
    assert np.asarray(Image.open(tmp_path / "mask.png")).shape == (20, 30)
    assert predict.main([*args, "--expression", "the big red circle", *out, "--max-pixels", "100"]) == 2
    assert "30x20 = 600 pixels, over the cap of 100 pixels" in capsys.readouterr().err
