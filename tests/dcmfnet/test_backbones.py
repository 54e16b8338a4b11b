"""Backbones: stage shapes read from the libraries, dilation, local weights files and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dcmfnet import build_model
from dcmfnet.backbones import (
    BACKBONES,
    ResNetBackbone,
    SwinBackbone,
    TinyConvBackbone,
    VisionBackbone,
    build_backbone,
)

TINY_SWIN = {"embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 4}


def assert_stage_shapes(backbone: VisionBackbone, size: tuple[int, int], device: str = "cpu") -> None:
    features = backbone(torch.randn(1, 3, *size, device=device))
    assert len(features) == 4
    for feature, channels, reduction in zip(features, backbone.channels, backbone.reductions, strict=True):
        assert feature.shape == (1, channels, size[0] // reduction, size[1] // reduction)


@pytest.mark.parametrize(
    ("output_stride", "reductions"), [(8, (4, 8, 8, 8)), (16, (4, 8, 16, 16)), (32, (4, 8, 16, 32))]
)
def test_resnet50_dilation(output_stride: int, reductions: tuple[int, ...]) -> None:
    with torch.device("meta"):  # shapes only: no memory, no compute
        backbone = build_backbone("resnet50", output_stride=output_stride)
    assert backbone.channels == (256, 512, 1024, 2048)
    assert backbone.reductions == reductions and backbone.size_multiple == output_stride
    with torch.no_grad():
        assert_stage_shapes(backbone.eval(), (64, 96), device="meta")


def test_resnet_widths_are_read_from_the_model() -> None:
    with torch.device("meta"):
        assert ResNetBackbone("resnet101").channels == (256, 512, 1024, 2048)
        assert ResNetBackbone("resnet18", output_stride=32).channels == (64, 128, 256, 512)
    with pytest.raises(ValueError, match=r"resnet18.*output_stride=32"):
        ResNetBackbone("resnet18", output_stride=8)


def test_swin_from_timm() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("swin_tiny", output_stride=32, image_size=64, options=TINY_SWIN)
    assert isinstance(backbone, SwinBackbone)
    assert backbone.channels == (8, 16, 32, 64) and backbone.reductions == (4, 8, 16, 32)
    with torch.no_grad():
        assert_stage_shapes(backbone.eval(), (64, 96))  # not the nominal size: windows are padded
    with pytest.raises(ValueError, match="output stride 32 only"):
        build_backbone("swin_tiny", output_stride=16, options=TINY_SWIN)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_tiny_cnn(output_stride: int) -> None:
    backbone = TinyConvBackbone(widths=(4, 6, 8, 10), output_stride=output_stride)
    assert backbone.channels == (4, 6, 8, 10)
    assert backbone.reductions == tuple(min(r, output_stride) for r in (4, 8, 16, 32))
    assert_stage_shapes(backbone, (64, 32))


def test_unknown_backbone_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'.*resnet101.*swin_base.*tiny_cnn"):
        build_backbone("vgg")
    assert set(BACKBONES) == {"resnet18", "resnet50", "resnet101", "swin_tiny", "swin_small", "swin_base", "tiny_cnn"}


# --- local weights files ---------------------------------------------------------------------------------------


def test_resnet_weights_file_round_trip(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None)  # torchvision's key names, classifier included
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    backbone = build_backbone("resnet18", output_stride=32, weights=path)
    torch.testing.assert_close(backbone.stem[0].weight, reference.conv1.weight)
    torch.testing.assert_close(backbone.stages[3][1].bn2.running_var, reference.layer4[1].bn2.running_var)

    # The same file as safetensors, nested under "state_dict" with a DDP prefix, through a config.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, wrapped)
    model = build_model(_resnet18_config(str(wrapped)))
    torch.testing.assert_close(model.backbone.stem[0].weight, reference.conv1.weight)


def _resnet18_config(weights: str):
    from dcmfnet import ModelConfig

    return ModelConfig(
        backbone="resnet18",
        output_stride=32,
        backbone_weights=weights,
        text_encoder="word",
        text_channels=8,
        lgve1_guidance_channels=8,
        multi_level_channels=8,
        aspp_channels=8,
        decoder_channels=8,
        igf_layers=1,
    )


def test_mismatching_weights_file_names_the_keys(tmp_path: Path) -> None:
    import torchvision

    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer2.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        build_backbone("resnet18", output_stride=32, weights=path)
    message = str(info.value)
    assert "1 missing keys: layer2.0.conv1.weight" in message
    assert "1 unexpected keys: extra.weight" in message
    assert "conv1.weight: file (64, 3, 3, 3) vs model (64, 3, 7, 7)" in message
    with pytest.raises(ValueError, match="missing keys"):  # a ResNet-18 file for a ResNet-50
        build_backbone("resnet50", weights=path)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        build_backbone("tiny_cnn", weights=tmp_path / "nope.pth")
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        build_backbone("swin_tiny", output_stride=32, weights=tmp_path / "nope.pth", options=TINY_SWIN)


def test_swin_weights_file(tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = timm.create_model("swin_tiny_patch4_window7_224", num_classes=5, img_size=64, **TINY_SWIN)
    path = tmp_path / "swin.safetensors"
    save_file(reference.state_dict(), str(path))  # head.* and norm.* are ignored
    backbone = build_backbone("swin_tiny", output_stride=32, image_size=64, weights=path, options=TINY_SWIN)
    torch.testing.assert_close(backbone.stem.patch_embed.proj.weight, reference.patch_embed.proj.weight)

    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("layers.3")}
    save_file(state, str(path))
    with pytest.raises(ValueError, match=r"missing keys: layers\.3\."):
        build_backbone("swin_tiny", output_stride=32, image_size=64, weights=path, options=TINY_SWIN)


def test_tiny_cnn_weights_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = TinyConvBackbone(widths=(4, 6, 8, 10))
    path = tmp_path / "tiny.pt"
    torch.save(reference.state_dict(), path)
    loaded = build_backbone("tiny_cnn", weights=path, options={"widths": [4, 6, 8, 10]})
    torch.testing.assert_close(loaded.stages[2][0][0].weight, reference.stages[2][0][0].weight)
    with pytest.raises(ValueError, match="shape mismatches"):
        build_backbone("tiny_cnn", weights=path, options={"widths": [4, 6, 8, 12]})
