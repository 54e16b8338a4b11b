"""The image reader: each kind of image comes out as the (H, W, 3) uint8 RGB a viewer shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from dcmfnet.errors import InputError
from dcmfnet.images import ImageReadError, image_from_array, image_from_pil, read_image


def exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 48x32 (W x H) JPEG stored with EXIF orientation 6, left half red and right half blue as stored.

    Returns the stored pixels (what a reader that ignores EXIF would see).
    """
    stored = np.zeros((32, 48, 3), dtype=np.uint8)
    stored[:, :24] = (220, 20, 20)
    stored[:, 24:] = (20, 20, 220)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return stored


def test_exif_orientation_6_jpeg_is_read_upright(tmp_path: Path) -> None:
    exif_rotated_jpeg(tmp_path / "photo.jpg")
    image = read_image(tmp_path / "photo.jpg")
    assert image.shape == (48, 32, 3)  # the viewer's 32 wide x 48 high
    with Image.open(tmp_path / "photo.jpg") as handle:
        assert np.array_equal(image, np.array(ImageOps.exif_transpose(handle).convert("RGB")))
    # rotated 90° clockwise, the stored left (red) half is on top, the right (blue) half below
    assert image[:20, :, 0].mean() > 180 and image[:20, :, 2].mean() < 60
    assert image[28:, :, 2].mean() > 180 and image[28:, :, 0].mean() < 60


def test_16_bit_greyscale_is_scaled_by_its_value_range(tmp_path: Path) -> None:
    values = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (8, 1))  # 12-bit data in a 16-bit PNG
    Image.fromarray(values).save(tmp_path / "depth.png")
    with Image.open(tmp_path / "depth.png") as handle:
        assert handle.mode.startswith("I")
    image = read_image(tmp_path / "depth.png")
    assert image.shape == (8, 64, 3) and image.dtype == np.uint8
    expected = np.rint(values / 4095 * 255).astype(np.uint8)
    assert np.array_equal(image[..., 0], expected) and np.array_equal(image[..., 2], expected)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_32_bit_greyscale_is_scaled_by_its_value_range(tmp_path: Path, dtype: type) -> None:
    values = np.tile(np.linspace(-1000, 3000, 32), (4, 1)).astype(dtype)
    Image.fromarray(values).save(tmp_path / "deep.tif")
    with Image.open(tmp_path / "deep.tif") as handle:
        assert handle.mode in ("I", "F")
    image = read_image(tmp_path / "deep.tif")
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255
    assert np.all(np.diff(image[0, :, 0].astype(int)) >= 0)


def test_palette_image_is_converted(tmp_path: Path) -> None:
    rgb = np.zeros((10, 12, 3), dtype=np.uint8)
    rgb[:, 6:] = (10, 200, 30)
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.png")
    assert np.array_equal(read_image(tmp_path / "palette.png"), rgb)


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2))
    image.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    image.info["transparency"] = 0  # palette index 0 (blue) is transparent
    image.save(tmp_path / "transparent.png")
    pixels = read_image(tmp_path / "transparent.png")
    assert tuple(pixels[0, 0]) == (255, 0, 0) and tuple(pixels[1, 3]) == (255, 255, 255)


def test_rgba_is_composited_on_the_stated_background(tmp_path: Path) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., :3] = (200, 0, 0)
    rgba[..., 3] = [[0, 255, 128], [0, 0, 0]]
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    image = read_image(tmp_path / "alpha.png")
    assert tuple(image[0, 0]) == (255, 255, 255)  # transparent: white, not the hidden red
    assert tuple(image[0, 1]) == (200, 0, 0)
    assert tuple(image[0, 2]) == (227, 127, 127)  # half: blended
    assert tuple(read_image(tmp_path / "alpha.png", background=(0, 0, 0))[0, 0]) == (0, 0, 0)
    assert np.array_equal(image_from_array(rgba), image)
    la = Image.fromarray(rgba).convert("LA")
    assert tuple(image_from_pil(la)[0, 0]) == (255, 255, 255)


def test_pixel_cap_is_checked_from_the_header_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.new("RGB", (120, 100)).save(tmp_path / "big.png")

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(InputError, match=r"big\.png is 120x100 = 12,000 pixels, over the cap of 10,000"):
        read_image(tmp_path / "big.png", max_pixels=10_000)
    monkeypatch.undo()
    assert read_image(tmp_path / "big.png", max_pixels=12_000).shape == (100, 120, 3)
    with pytest.raises(InputError, match="12,000 pixels"):
        image_from_array(np.zeros((100, 120, 3), dtype=np.uint8), max_pixels=10_000)


def test_undecodable_and_missing_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ImageReadError, match=r"cannot read image .*broken\.png"):
        read_image(tmp_path / "broken.png")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(tmp_path / "full.jpg")
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "full.jpg").read_bytes()[:200])
    with pytest.raises(OSError, match=r"truncated\.jpg"):
        read_image(tmp_path / "truncated.jpg")
    with pytest.raises(OSError, match=r"missing\.png does not exist"):
        read_image(tmp_path / "missing.png")


def test_arrays_of_each_shape_and_dtype() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert np.array_equal(image_from_array(grey), np.repeat(grey[..., None], 3, axis=2))
    assert image_from_array(grey.astype(bool)).max() == 255
    assert image_from_array(np.full((2, 2, 3), 0.5)).max() == 0  # a constant image has no range: black
    for bad in (np.zeros((2, 2, 2)), np.zeros((2,)), np.zeros((0, 3, 3))):
        with pytest.raises(InputError, match="shape"):
            image_from_array(bad)
    with pytest.raises(InputError, match="NaN"):
        image_from_array(np.full((2, 2), np.nan))
