"""Model configuration of DCMFNet: every ablation of the paper as a field, and :func:`build_model`.

The YAML files in ``configs/`` (``paper_resnet101.yaml``, ``paper_swin.yaml``,
``model_cpu.yaml``) hold these fields at the top level; the trainer's run
configs hold them under ``model:``. Load one with :func:`load_model_config`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn

from dcmfnet.backbones import BACKBONES, build_backbone, output_strides
from dcmfnet.blocks import (
    ASPP,
    BidirectionalGatedFusion,
    ConcatFusion,
    GatedFusion,
    MultiplicativeFusion,
    NoFusion,
    NoMultiLevelFusion,
    SegmentationHead,
)
from dcmfnet.configs import resolve_config
from dcmfnet.model import DCMFNet
from dcmfnet.text_encoders import DEFAULT_WORDS, POOLINGS, TEXT_ENCODERS, TextEncoder, build_text_encoder
from igf import FUSION_LAYERS, GATES, OUTPUT_MODES, build_fusion_layer

__all__ = ["LGVE1_PLACEMENTS", "MLFF_MODES", "ModelConfig", "build_model", "load_model_config"]

LGVE1_PLACEMENTS: dict[str, tuple[str, ...]] = {
    "none": (),
    "e4": ("e4",),
    "e3_e4": ("e3", "e4"),
    "e2_e3_e4": ("e2", "e3", "e4"),
}
"""LGVE-1 placements (Table 2 rows 1-5): the encoder stages whose output goes through an IGF."""

MLFF_MODES: tuple[str, ...] = ("none", "concat", "gated", "bidirectional_gated", "igf")
"""Decoder multi-level fusion (Table 2 rows 8-12)."""

_MLFF_BLOCKS: dict[str, type[nn.Module]] = {
    "none": NoMultiLevelFusion,
    "concat": ConcatFusion,
    "gated": GatedFusion,
    "bidirectional_gated": BidirectionalGatedFusion,
}


@dataclass
class ModelConfig:
    """DCMFNet configuration. Defaults are the paper's ResNet-101 model (§4.1).

    Attributes:
        backbone: One of ``resnet18``, ``resnet50``, ``resnet101``, ``swin_tiny``,
            ``swin_small``, ``swin_base``, ``tiny_cnn``.
        output_stride: 8, 16 or 32 (dilated ResNet-50/101 and tiny_cnn; resnet18 and Swin: 32).
        backbone_weights: Local weights file for the backbone (library key names), or None for random weights.
        backbone_options: Extra backbone arguments: ``widths``/``stem_channels`` for tiny_cnn,
            ``timm.create_model`` arguments for Swin.
        image_size: Nominal input size (Swin's ``img_size``; the paper: 480).
        text_encoder: ``bert`` (Hugging Face model at ``text_encoder_path``), ``minilm``
            (offline all-MiniLM-L6-v2) or ``word`` (built-in).
        text_encoder_path: For ``bert``: local directory or hub name.
        text_pooling: ``cls`` or ``mean``.
        freeze_text_encoder: Freeze the text encoder.
        text_vocabulary: For ``word``: the known words.
        word_channels: For ``word``: width ``C_L``.
        word_layers: For ``word``: transformer layers.
        word_heads: For ``word``: attention heads.
        text_channels: ``C_l``, width of the sentence feature after the linear layer (paper: 256).
        lgve1: IGF placement in the encoder stages: ``none``, ``e4``, ``e3_e4`` (paper), ``e2_e3_e4``.
        lgve2: The IGF that fuses ``L`` into ``M`` (``E_enc``). Off: ``E_enc = M``; when
            ``lgve1`` is also ``none`` a one-step ``M * tanh(W L)`` takes its place so the
            expression still reaches the network (Table 2 row 1; the paper does not say how).
        mlff: Decoder multi-level fusion: ``none``, ``concat``, ``gated`` (CMSA-style),
            ``bidirectional_gated`` (BRINet-style), ``igf`` (paper).
        fusion_layer: The layer at every IGF site (LGVE-1, LGVE-2, and the decoder when ``mlff`` is
            ``igf``): ``igf`` (paper), or a peer from :mod:`igf` at the same widths: ``film`` (FiLM),
            ``pwam`` (LAVT's pixel-word attention, reading the words at the language sites) or
            ``concat`` (tile, concatenate, convolve). The ``igf_*`` settings below apply to ``igf`` only.
        pwam_identity_init: With ``fusion_layer: pwam``: start every site as the identity (the language
            gate's output weight at zero, LAVT §3.3; default) or, ``false``, keep PyTorch's default
            initialisation, as LAVT's released code (see :class:`igf.PixelWordAttention`).
        igf_token_pooling: How the IGFs at the language sites read the expression: ``mean`` (the
            sentence feature ``L``, paper) or ``attention`` (each position attends over the words; not
            in the paper, see :class:`igf.IterativeGatedFusion`).
        igf_layers: IGF depth ``L`` (paper: 5, Table 4).
        igf_heads: Bilinear heads per fusion unit (paper: 5).
        igf_gate: ``asgate`` (paper), ``convgru``, ``convlstm`` (Table 6).
        igf_output_mode: ``all_fusions`` (paper), ``last_fusion``, ``last_gate``,
            ``fusions_and_last_gate`` (Table 5).
        igf_kernel_size: Kernel of the gates' and output convolutions (paper: 3).
        igf_checkpoint: Activation checkpointing inside the IGFs (saves memory).
        igf_fused: The IGFs' fused fusion/ASGate steps (default; keep no ``h C'_v``-wide tensor for
            backward, same values); ``False`` is the plain path (a little faster at small CPU shapes).
        lgve1_hidden_ratio: ``C'_v / C_v`` of the encoder-stage IGFs (paper: 0.5).
        lgve1_guidance_channels: ``C'_l`` of the encoder-stage IGFs (paper: 256).
        multi_level_channels: Width of ``M`` and ``C'_v = C'_l`` of the LGVE-2 IGF (paper: 256).
        aspp_channels: Width of ASPP and ``M_dec`` (256, DeepLabv3).
        aspp_rates: ASPP atrous rates (6, 12, 18 at output stride 16; double them at 8).
        decoder_channels: ``C'_v = C'_l`` and output of the decoder IGF, width of the head (paper: 128).
        head_dropout: Dropout in the segmentation head.
    """

    backbone: str = "resnet101"
    output_stride: int = 16
    backbone_weights: str | None = None
    backbone_options: dict[str, Any] = field(default_factory=dict)
    image_size: int = 480
    text_encoder: str = "bert"
    text_encoder_path: str = "bert-base-uncased"
    text_pooling: str = "cls"
    freeze_text_encoder: bool = False
    text_vocabulary: list[str] = field(default_factory=lambda: list(DEFAULT_WORDS))
    word_channels: int = 64
    word_layers: int = 1
    word_heads: int = 4
    text_channels: int = 256
    lgve1: str = "e3_e4"
    lgve2: bool = True
    mlff: str = "igf"
    fusion_layer: str = "igf"
    pwam_identity_init: bool = True
    igf_token_pooling: str = "mean"
    igf_layers: int = 5
    igf_heads: int = 5
    igf_gate: str = "asgate"
    igf_output_mode: str = "all_fusions"
    igf_kernel_size: int = 3
    igf_checkpoint: bool = False
    igf_fused: bool = True
    lgve1_hidden_ratio: float = 0.5
    lgve1_guidance_channels: int = 256
    multi_level_channels: int = 256
    aspp_channels: int = 256
    aspp_rates: list[int] = field(default_factory=lambda: [6, 12, 18])
    decoder_channels: int = 128
    head_dropout: float = 0.1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Checks the named choices and sizes.

        Raises:
            ValueError: An unknown name (the valid ones are listed), an output stride the
                backbone does not support (e.g. Swin: 32 only), or a non-positive size.
        """
        choices: dict[str, tuple[Any, Sequence[Any]]] = {
            "backbone": (self.backbone, BACKBONES),
            "output_stride": (self.output_stride, (8, 16, 32)),
            "text_encoder": (self.text_encoder, TEXT_ENCODERS),
            "text_pooling": (self.text_pooling, POOLINGS),
            "lgve1": (self.lgve1, tuple(LGVE1_PLACEMENTS)),
            "mlff": (self.mlff, MLFF_MODES),
            "fusion_layer": (self.fusion_layer, FUSION_LAYERS),
            "igf_token_pooling": (self.igf_token_pooling, TOKEN_POOLINGS),
            "igf_gate": (self.igf_gate, tuple(GATES)),
            "igf_output_mode": (self.igf_output_mode, OUTPUT_MODES),
        }
        for name, (value, valid) in choices.items():
            if value not in valid:
                raise ValueError(f"unknown {name} {value!r}; valid: {list(valid)}")
        strides = output_strides(self.backbone)
        if self.output_stride not in strides:
            valid = " or ".join(f"output_stride={s}" for s in strides)
            raise ValueError(
                f"backbone {self.backbone!r} supports only {valid}, got output_stride={self.output_stride}"
            )
        if not isinstance(self.lgve2, bool):
            raise ValueError(f"lgve2 must be true or false, got {self.lgve2!r}")
        sizes = (
            "image_size", "word_channels", "word_layers", "word_heads", "text_channels", "igf_layers",
            "igf_heads", "igf_kernel_size", "lgve1_guidance_channels", "multi_level_channels",
            "aspp_channels", "decoder_channels",
        )  # fmt: skip
        for name in sizes:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0 < self.lgve1_hidden_ratio <= 4:
            raise ValueError(f"lgve1_hidden_ratio must be in (0, 4], got {self.lgve1_hidden_ratio}")
        if not 0 <= self.head_dropout < 1:
            raise ValueError(f"head_dropout must be in [0, 1), got {self.head_dropout}")

    def reads_words(self) -> bool:
        """Whether the language sites take the word features ``(B, T, C_l)`` instead of the sentence ``L``."""
        words = self.fusion_layer == "pwam" or (self.fusion_layer == "igf" and self.igf_token_pooling == "attention")
        return words and (self.lgve1 != "none" or self.lgve2)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for checkpoints and logs)."""
        return asdict(self)


def load_model_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ModelConfig:
    """Reads a :class:`ModelConfig` from a YAML file (fields at the top level) and ``key=value`` overrides.

    Args:
        path: YAML file or the name of a shipped config (``model_cpu``), or None for the defaults.
        overrides: Dotlist overrides, e.g. ``["lgve2=false", "igf_layers=3"]``.

    Raises:
        omegaconf.errors.ConfigKeyError: An unknown key.
        ValueError: An invalid value (see :meth:`ModelConfig.validate`).
    """
    schema = OmegaConf.structured(ModelConfig)
    sources = [OmegaConf.load(resolve_config(path))] if path is not None else []
    merged = OmegaConf.merge(schema, *sources, OmegaConf.from_dotlist(list(overrides)))
    config = OmegaConf.to_object(merged)
    assert isinstance(config, ModelConfig)
    return config


def build_model(
    cfg: ModelConfig, *, text_encoder: TextEncoder | None = None, device: torch.device | str | None = None
) -> DCMFNet:
    """Builds DCMFNet from a config.

    Args:
        cfg: The configuration.
        text_encoder: Use this text encoder instead of the one ``cfg`` names (e.g. a
            randomly initialised BERT for FLOP counts).
        device: Build the parameters directly on this device (``"meta"`` builds
            without memory, for counting).

    Returns:
        The model, in training mode.

    Raises:
        ValueError: An invalid config.
    """
    cfg.validate()
    with torch.device(device) if device is not None else nullcontext():
        return _build(cfg, text_encoder)


def _build(cfg: ModelConfig, text_encoder: TextEncoder | None) -> DCMFNet:
    backbone = build_backbone(
        cfg.backbone,
        output_stride=cfg.output_stride,
        weights=cfg.backbone_weights,
        image_size=cfg.image_size,
        options=cfg.backbone_options,
    )
    if text_encoder is None:
        text_encoder = build_text_encoder(
            cfg.text_encoder,
            path=cfg.text_encoder_path,
            pooling=cfg.text_pooling,
            frozen=cfg.freeze_text_encoder,
            vocabulary=cfg.text_vocabulary,
            word_channels=cfg.word_channels,
            word_layers=cfg.word_layers,
            word_heads=cfg.word_heads,
        )

    def igf(
        guidance: int, guided: int, *, hidden: int, guidance_hidden: int, out: int | None = None, language: bool = True
    ) -> nn.Module:
        """The fusion layer of an IGF site; a peer gets IGF's widths: ``hidden`` is C'_v (PWAM's key width,
        Concat's hidden width; FiLM has none). ``language``: the site's guidance is the expression."""
        options = _layer_options(cfg, hidden, guidance_hidden, language=language)
        return build_fusion_layer(cfg.fusion_layer, guidance_channels=guidance, guided_channels=guided,
                                  out_channels=out, **options)  # fmt: skip

    # LGVE-1: IGF(L, V_i) at the chosen stages, C'_v = C_v * ratio, C'_l = lgve1_guidance_channels.
    embedded = LGVE1_PLACEMENTS[cfg.lgve1]
    stage_fusions: dict[str, nn.Module] = {}
    for name, channels in zip(("e2", "e3", "e4"), backbone.channels[1:], strict=True):
        stage_fusions[name] = (
            igf(
                cfg.text_channels,
                channels,
                hidden=max(1, round(channels * cfg.lgve1_hidden_ratio)),
                guidance_hidden=cfg.lgve1_guidance_channels,
            )
            if name in embedded
            else NoFusion()
        )

    # LGVE-2: E_enc = IGF(L, M) with C'_v = C'_l = multi_level_channels.
    c_m = cfg.multi_level_channels
    if cfg.lgve2:
        fusion_enc: nn.Module = igf(cfg.text_channels, c_m, hidden=c_m, guidance_hidden=c_m)
    elif not embedded:
        fusion_enc = MultiplicativeFusion(cfg.text_channels, c_m)
    else:
        fusion_enc = NoFusion()

    # MLFF: E_dec = fusion(M_dec↑, V1) -> decoder_channels.
    c_dec, c_v1 = cfg.decoder_channels, backbone.channels[0]
    if cfg.mlff == "igf":
        fusion_dec = igf(cfg.aspp_channels, c_v1, hidden=c_dec, guidance_hidden=c_dec, out=c_dec, language=False)
    else:
        fusion_dec = _MLFF_BLOCKS[cfg.mlff](cfg.aspp_channels, c_v1, out_channels=c_dec)

    return DCMFNet(
        backbone=backbone,
        reads_words=cfg.reads_words(),
        text_encoder=text_encoder,
        text_channels=cfg.text_channels,
        fusion_e2=stage_fusions["e2"],
        fusion_e3=stage_fusions["e3"],
        fusion_e4=stage_fusions["e4"],
        multi_level_channels=c_m,
        fusion_enc=fusion_enc,
        aspp=ASPP(c_m, cfg.aspp_channels, rates=cfg.aspp_rates),
        fusion_dec=fusion_dec,
        head=SegmentationHead(c_dec, hidden_channels=c_dec, dropout=cfg.head_dropout),
    )


#: IGF's ways of reading a token guidance (``IterativeGatedFusion(token_pooling=...)``).
TOKEN_POOLINGS: tuple[str, ...] = ("mean", "attention")


def _layer_options(cfg: ModelConfig, hidden: int, guidance_hidden: int, *, language: bool) -> dict[str, Any]:
    """The constructor options of ``cfg.fusion_layer`` at one site (C'_v = ``hidden``, C'_l = ``guidance_hidden``);
    ``igf_token_pooling`` reaches the language sites only (the decoder's guidance is a map)."""
    if cfg.fusion_layer == "igf":
        options: dict[str, Any] = {
            "num_layers": cfg.igf_layers,
            "heads": cfg.igf_heads,
            "gate": cfg.igf_gate,
            "hidden_channels": hidden,
            "guidance_hidden_channels": guidance_hidden,
            "output_mode": cfg.igf_output_mode,
            "kernel_size": cfg.igf_kernel_size,
            "checkpoint": cfg.igf_checkpoint,
            "fused": cfg.igf_fused,
        }
        if language and cfg.igf_token_pooling != "mean":
            options["token_pooling"] = cfg.igf_token_pooling
        return options
    if cfg.fusion_layer == "pwam":
        return {"key_channels": hidden, "identity_init": cfg.pwam_identity_init}
    if cfg.fusion_layer == "concat":
        return {"hidden_channels": hidden}
    return {}
