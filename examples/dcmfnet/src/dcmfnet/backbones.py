"""Four-stage vision encoders for DCMFNet, with the stages exposed one by one.

DCMFNet puts an IGF between stages 3 and 4 of its vision encoder (Eq. 5), so a
backbone here is a ``stem`` and four ``stages`` that map NCHW to NCHW, plus the
stage widths and strides read from the underlying library's model:

- :class:`ResNetBackbone`: torchvision ResNet-18/50/101, DeepLab-style dilation
  (``replace_stride_with_dilation``) for output stride 8 or 16.
- :class:`SwinBackbone`: a Swin transformer from timm (channels-last stages
  wrapped to NCHW).
- :class:`TinyConvBackbone`: a small 4-stage CNN for CPU runs.

Weights are random (``weights=None``) unless a local file is given; the file is a
state dict in the library's own key names (the files torchvision and timm publish)
and is checked against the model before loading.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from dcmfnet.blocks import ConvBN

__all__ = [
    "BACKBONES",
    "ResNetBackbone",
    "SwinBackbone",
    "TinyConvBackbone",
    "VisionBackbone",
    "build_backbone",
    "load_weights_file",
    "output_strides",
]

_RESNETS = ("resnet18", "resnet50", "resnet101")
_SWINS = {
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "swin_small": "swin_small_patch4_window7_224",
    "swin_base": "swin_base_patch4_window12_384",
}
BACKBONES: tuple[str, ...] = (*_RESNETS, *_SWINS, "tiny_cnn")
"""Backbone names :func:`build_backbone` accepts."""

_OUTPUT_STRIDES = (8, 16, 32)


def output_strides(name: str) -> tuple[int, ...]:
    """The output strides :func:`build_backbone` accepts for backbone ``name``.

    ResNet-18 (basic blocks, no dilation) and Swin support 32 only; the others 8, 16 and 32.
    """
    return (32,) if name == "resnet18" or name in _SWINS else _OUTPUT_STRIDES


class VisionBackbone(nn.Module):
    """A four-stage vision encoder: ``stem``, then ``stages[0..3]``, all NCHW.

    ``V_i = stages[i-1](...)``; DCMFNet runs the stages itself so it can fuse
    language between them.

    Attributes:
        stem: Module ``(B, 3, H, W) -> (B, C_0, H / r_0, W / r_0)``.
        stages: ``nn.ModuleList`` of four modules, NCHW in and out.
        channels: Output channels ``(C_1, C_2, C_3, C_4)`` of the stages.
        reductions: Output strides of the stages relative to the input.
        size_multiple: Input height and width must be multiples of this.
    """

    stem: nn.Module
    stages: nn.ModuleList
    channels: tuple[int, int, int, int]
    reductions: tuple[int, int, int, int]
    size_multiple: int

    def forward(self, images: Tensor) -> list[Tensor]:
        """Runs all stages without fusion.

        Inputs:
            - **images**: ``(B, 3, H, W)``.

        Returns:
            ``[V1, V2, V3, V4]``, ``V_i`` of shape ``(B, C_i, H / r_i, W / r_i)``.
        """
        x = self.stem(images)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def load_weights_file(
    module: nn.Module,
    path: str | Path,
    *,
    ignore_prefixes: Sequence[str] = (),
    name: str = "backbone",
    convert: Callable[[dict[str, Tensor]], Mapping[str, Tensor]] | None = None,
) -> None:
    """Loads a local state-dict file into ``module``, strictly, with an error that names the mismatches.

    Accepts ``.safetensors`` or a ``torch.save`` file (loaded with ``weights_only=True``);
    a dict nested under ``"state_dict"`` or ``"model"`` and a ``"module."`` key prefix
    (DistributedDataParallel) are unwrapped. Keys starting with one of
    ``ignore_prefixes`` (e.g. a classifier the backbone does not use) are ignored
    in the file and in ``module``. ``convert``, if given, maps the file's state dict
    to ``module``'s key names first (e.g. timm's checkpoint filter).

    Args:
        module: The module to load into, in the library's own key names.
        path: The weights file.
        ignore_prefixes: Key prefixes to drop from the file.
        name: What ``module`` is, for the messages.
        convert: Optional function applied to the state dict read from the file, before filtering.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: Keys missing from the file, unexpected keys, or shape mismatches (each listed).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{name} weights file not found: {path}")
    ignored = tuple(ignore_prefixes)
    state = read_state_dict(path)
    if convert is not None:
        state = dict(convert(state))
    state = {key: value for key, value in state.items() if not key.startswith(ignored)}
    expected = {key: value for key, value in module.state_dict().items() if not key.startswith(ignored)}
    check_state_dict(expected, state, source=str(path), name=name)
    module.load_state_dict(state, strict=False)  # strict apart from the ignored keys (checked above)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Reads a state dict from ``path`` (safetensors or torch.save), unwrapping common containers."""
    if path.suffix == ".safetensors":
        state: Any = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for container in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(container), Mapping):
            state = state[container]
    if not isinstance(state, Mapping):
        raise ValueError(
            f"{path} does not hold a state dict (a mapping of names to tensors), got {type(state).__name__}"
        )
    return {key.removeprefix("module."): value for key, value in state.items()}


def check_state_dict(expected: Mapping[str, Tensor], state: Mapping[str, Tensor], *, source: str, name: str) -> None:
    """Raises ``ValueError`` naming keys missing from ``state``, unexpected keys, and shape mismatches."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{key}: file {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key].shape)
    )
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{source} does not match the {name}:"]
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
            lines.append(f"  {len(keys)} {label}: {shown}")
    raise ValueError("\n".join(lines))


class ResNetBackbone(VisionBackbone):
    """torchvision ResNet as a four-stage encoder (stem = conv1-bn1-relu-maxpool, stages = layer1..4).

    Output stride 8 or 16 replaces the strides of the last stages with dilation
    (DeepLab); ResNet-18's basic blocks only support output stride 32.

    Args:
        depth: ``"resnet18"``, ``"resnet50"`` or ``"resnet101"``.
        output_stride: 8, 16 or 32.
        weights: Optional local file with a torchvision ResNet state dict (``fc.*`` is ignored).

    Raises:
        ValueError: Unknown depth or output stride, or a weights file that does not match.
    """

    def __init__(self, depth: str = "resnet101", *, output_stride: int = 16, weights: str | Path | None = None) -> None:
        super().__init__()
        import torchvision  # deferred: a second to import, ResNet backbones only

        if depth not in _RESNETS:
            raise ValueError(f"unknown ResNet {depth!r}; valid: {list(_RESNETS)}")
        if output_stride not in _OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {list(_OUTPUT_STRIDES)}, got {output_stride}")
        if depth == "resnet18" and output_stride != 32:
            raise ValueError("resnet18 (basic blocks) supports only output_stride=32; use resnet50/101 for 8 or 16")
        dilate = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}[output_stride]
        resnet = getattr(torchvision.models, depth)(weights=None, replace_stride_with_dilation=dilate)
        if weights is not None:
            load_weights_file(resnet, weights, ignore_prefixes=("fc.",), name=depth)
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool)
        self.stages = nn.ModuleList([resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4])
        # Widths from the last block of each stage: bn3 in bottlenecks, bn2 in basic blocks.
        self.channels = tuple(_last_batchnorm(stage).num_features for stage in self.stages)  # type: ignore[assignment]
        self.reductions = (4, 8, min(16, output_stride), min(32, output_stride))
        self.size_multiple = output_stride


def _last_batchnorm(module: nn.Module) -> nn.BatchNorm2d:
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    # In a torchvision block, the downsample BN comes after bn3/bn2 in modules(); the last block has none.
    return norms[-1]


class _ChannelsLastStage(nn.Module):
    """Runs a channels-last (NHWC) timm stage on NCHW input and returns NCHW."""

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x: Tensor) -> Tensor:
        return self.stage(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ChannelsLastStem(nn.Module):
    """Runs timm's channels-last patch embedding and returns NCHW."""

    def __init__(self, patch_embed: nn.Module) -> None:
        super().__init__()
        self.patch_embed = patch_embed

    def forward(self, images: Tensor) -> Tensor:
        return self.patch_embed(images).permute(0, 3, 1, 2)


class SwinBackbone(VisionBackbone):
    """A timm Swin transformer as a four-stage encoder (stem = patch embedding, stages = ``layers[0..3]``).

    Built without the classifier and final norm. Stage widths and strides come
    from timm's ``feature_info``. Inputs of any size that is a multiple of 32 are
    accepted (``strict_img_size=False``; windows are padded by timm).

    Args:
        variant: ``"swin_tiny"``, ``"swin_small"``, ``"swin_base"`` (window 12, the
            usual choice at 480x480), or any timm Swin model name.
        image_size: Nominal input size given to timm (the paper trains at 480).
        weights: Optional local file with a timm (or official Swin) state dict;
            ``head.*`` and the final ``norm.*`` are ignored.
        timm_kwargs: Extra keyword arguments for ``timm.create_model``
            (e.g. ``embed_dim``, ``depths``, ``num_heads``, ``window_size`` for a tiny test model).

    Raises:
        ValueError: A weights file that does not match.
    """

    def __init__(
        self,
        variant: str = "swin_base",
        *,
        image_size: int = 480,
        weights: str | Path | None = None,
        timm_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import timm  # deferred: seconds to import, Swin backbones only

        model_name = _SWINS.get(variant, variant)
        swin = timm.create_model(
            model_name,
            pretrained=False,
            num_classes=0,
            img_size=image_size,
            strict_img_size=False,
            **dict(timm_kwargs or {}),
        )
        if weights is not None:
            self._load(swin, weights, model_name)
        self.stem = _ChannelsLastStem(swin.patch_embed)
        self.stages = nn.ModuleList([_ChannelsLastStage(layer) for layer in swin.layers])
        if len(self.stages) != 4:
            raise ValueError(f"{model_name} has {len(self.stages)} stages; DCMFNet needs 4")
        info = swin.feature_info
        self.channels = tuple(int(stage["num_chs"]) for stage in info)  # type: ignore[assignment]
        self.reductions = tuple(int(stage["reduction"]) for stage in info)  # type: ignore[assignment]
        self.size_multiple = self.reductions[-1]

    @staticmethod
    def _load(swin: nn.Module, weights: str | Path, model_name: str) -> None:
        from timm.models.swin_transformer import checkpoint_filter_fn  # deferred: as timm above

        # timm's own filter converts official Swin checkpoints and drops non-persistent buffers;
        # the unused head and final norm are ignored.
        load_weights_file(
            swin,
            weights,
            ignore_prefixes=("head.", "norm."),
            name=model_name,
            convert=lambda state: checkpoint_filter_fn(state, swin),
        )


class TinyConvBackbone(VisionBackbone):
    """A small four-stage CNN for CPU runs: each stage is two 3x3 ConvBN-ReLU, the first one strided.

    Stem: 3x3 ConvBN-ReLU, stride 2. Stage strides 2, 2, 2, 2 (total 4, 8, 16, 32);
    output stride 16 or 8 replaces the last strides with dilation like DeepLab.

    Args:
        widths: Output channels of the four stages.
        stem_channels: Channels of the stem (default: ``widths[0]``).
        output_stride: 8, 16 or 32.
        weights: Optional local file with this module's state dict.

    Raises:
        ValueError: Not four widths, or an unknown output stride.
    """

    def __init__(
        self,
        *,
        widths: Sequence[int] = (16, 24, 32, 48),
        stem_channels: int | None = None,
        output_stride: int = 16,
        weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ValueError(f"tiny_cnn needs 4 stage widths, got {list(widths)}")
        if output_stride not in _OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {list(_OUTPUT_STRIDES)}, got {output_stride}")
        stem_channels = widths[0] if stem_channels is None else int(stem_channels)
        self.stem = ConvBN(3, stem_channels, stride=2)
        stages, in_channels, reduction, dilation = [], stem_channels, 2, 1
        reductions = []
        for width in widths:
            if reduction * 2 <= output_stride:
                stride, reduction = 2, reduction * 2
            else:
                stride, dilation = 1, dilation * 2
            stages.append(
                nn.Sequential(
                    ConvBN(in_channels, width, stride=stride, dilation=1 if stride == 2 else dilation),
                    ConvBN(width, width, dilation=dilation if stride == 1 else 1),
                )
            )
            reductions.append(reduction)
            in_channels = width
        self.stages = nn.ModuleList(stages)
        self.channels = widths  # type: ignore[assignment]
        self.reductions = tuple(reductions)  # type: ignore[assignment]
        self.size_multiple = output_stride
        if weights is not None:
            load_weights_file(self, weights, name="tiny_cnn")


def build_backbone(
    name: str,
    *,
    output_stride: int = 16,
    weights: str | Path | None = None,
    image_size: int = 480,
    options: Mapping[str, Any] | None = None,
) -> VisionBackbone:
    """Builds a backbone by name.

    Args:
        name: One of :data:`BACKBONES`.
        output_stride: 8, 16 or 32 (ResNet-50/101 and tiny_cnn; ResNet-18 and Swin: 32 only).
        weights: Optional local weights file (see the classes).
        image_size: Nominal input size (Swin only).
        options: Extra keyword arguments: ``TinyConvBackbone`` arguments for ``tiny_cnn``
            (``widths``, ``stem_channels``), ``timm.create_model`` arguments for Swin.

    Returns:
        The backbone.

    Raises:
        ValueError: Unknown name, unsupported output stride, or options for a backbone that takes none.
    """
    options = dict(options or {})
    if name in _RESNETS:
        if options:
            raise ValueError(f"{name} takes no backbone options, got {sorted(options)}")
        return ResNetBackbone(name, output_stride=output_stride, weights=weights)
    if name in _SWINS:
        if output_stride != 32:
            raise ValueError(f"{name} has output stride 32 only, got output_stride={output_stride}")
        return SwinBackbone(name, image_size=image_size, weights=weights, timm_kwargs=options)
    if name == "tiny_cnn":
        return TinyConvBackbone(output_stride=output_stride, weights=weights, **options)
    raise ValueError(f"unknown backbone {name!r}; valid: {list(BACKBONES)}")
