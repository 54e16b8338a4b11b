"""DCMFNet: the referring image segmentation network of the paper (§3.2-3.3, Fig. 2, Eq. 5-6), built on ``igf``.

The forward pass reads like Fig. 2::

    L     = Linear(TextEncoder(text))                  sentence feature, (B, C_l)
    V1    = Stage1(Stem(I)); V2 = Stage2(V1)
    E2    = IGF(L, V2)       (only with lgve1="e2_e3_e4"; else E2 = V2)
    V3    = Stage3(E2)
    E3    = IGF(L, V3)                                 Eq. 5 (LGVE-1)
    E4    = IGF(L, Stage4(E3))                         Eq. 5 (LGVE-1)
    M     = ConvBN([E2↓; E3↓; E4])                     Eq. 5 (↓: resize to E4's size)
    E_enc = IGF(L, M)                                  Eq. 5 (LGVE-2)
    M_dec = ASPP(E_enc)                                §3.3
    E_dec = IGF(M_dec↑, V1)                            Eq. 6 (MLFF)
    P     = Head(E_dec)↑                               logits at the input size

Each ablation of the paper swaps one of these sites at construction (a
disabled IGF becomes :class:`~dcmfnet.blocks.NoFusion`), so
``forward`` has no configuration branches. Build it from a
:class:`~dcmfnet.config.ModelConfig` with
:func:`~dcmfnet.config.build_model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple, cast, overload

import torch
from torch import Tensor, nn

from dcmfnet.backbones import VisionBackbone
from dcmfnet.blocks import ConvBN, _FusionSite, resize_to
from dcmfnet.text_encoders import TextEncoder, pool_tokens
from igf import IGFOutput, IterativeGatedFusion

__all__ = ["FUSION_SITES", "DCMFNet", "DCMFNetOutput"]

FUSION_SITES: tuple[str, ...] = ("e2", "e3", "e4", "enc", "dec")
"""Names of the fusion sites, as keys of :attr:`DCMFNetOutput.igf`: LGVE-1 at E2/E3/E4, LGVE-2, MLFF."""


class DCMFNetOutput(NamedTuple):
    """Output of :meth:`DCMFNet.forward` with ``return_intermediates=True``.

    Attributes:
        logits: ``(B, 1, H, W)`` at the input size.
        sentence: ``L``, the projected sentence feature, ``(B, C_l)``.
        v1: Stage-1 output ``V1``, ``(B, C_1, H/4, W/4)``.
        v2: Stage-2 output ``V2``.
        v3: Stage-3 output ``V3`` (computed from ``E2``).
        e2: ``E2`` (``= V2`` unless LGVE-1 embeds IGF at E2).
        e3: ``E3`` (``= V3`` without IGF at E3).
        e4: ``E4``, output of stage 4 (fused with language when LGVE-1 has E4): the LGVE-1 map of Fig. 6.
        multi_level: ``M = ConvBN([E2↓; E3↓; E4])``.
        e_enc: ``E_enc`` (``= M`` without LGVE-2): the LGVE-2 map of Fig. 6.
        m_dec: ``M_dec = ASPP(E_enc)``.
        e_dec: ``E_dec``, the decoder's multi-level fusion: the MLFF map of Fig. 6.
        igf: For every site that is an IGF (keys from :data:`FUSION_SITES`), its
            :class:`igf.IGFOutput` with the per-layer ``F_t`` (Fig. 7) and ``G_t``.
    """

    logits: Tensor
    sentence: Tensor
    v1: Tensor
    v2: Tensor
    v3: Tensor
    e2: Tensor
    e3: Tensor
    e4: Tensor
    multi_level: Tensor
    e_enc: Tensor
    m_dec: Tensor
    e_dec: Tensor
    igf: dict[str, IGFOutput]

    def stage_maps(self) -> dict[str, Tensor]:
        """The maps of Fig. 6: ``{"LGVE-1": E4, "LGVE-2": E_enc, "MLFF": E_dec}``."""
        return {"LGVE-1": self.e4, "LGVE-2": self.e_enc, "MLFF": self.e_dec}


class DCMFNet(nn.Module):
    """Deep Cross-Modal Fusion Network (paper Fig. 2).

    Args:
        backbone: Four-stage vision encoder.
        text_encoder: Sentence encoder (owns the tokenizer).
        text_channels: ``C_l``, width of ``L`` after the linear layer (paper: 256).
        fusion_e2: Site ``E2 = fusion(L, V2)``; guided ``C_2`` channels in and out.
        fusion_e3: Site ``E3 = fusion(L, V3)``; ``C_3`` in and out.
        fusion_e4: Site ``E4 = fusion(L, Stage4(E3))``; ``C_4`` in and out.
        multi_level_channels: Width of ``M`` (paper: 256).
        fusion_enc: Site ``E_enc = fusion(L, M)``; ``multi_level_channels`` in and out.
        aspp: ``M_dec = aspp(E_enc)``.
        fusion_dec: Site ``E_dec = fusion(M_dec↑, V1)`` -> ``decoder_channels``; it is given ``M_dec``
            at its own resolution and resizes it to ``V1``'s size itself.
        head: ``decoder_channels`` -> one logit map.
        reads_words: The language sites (E2, E3, E4, E_enc) take the word features ``Linear(tokens)``
            ``(B, T, C_l)`` with the padding mask instead of the sentence feature ``L`` (pixel-word
            attention, or IGF with ``token_pooling="attention"``); off for the paper's model.

    ``M`` is built from ``E2`` where Eq. 5 (paper §3.2) writes ``V2``. The two are the
    same map except in the ``lgve1="e2_e3_e4"`` ablation, where this uses the
    language-fused ``E2``, the map stage 3 sees, rather than the raw ``V2``.

    Every fusion site is called as ``site(guidance, guided)``, or ``site(words, guided, guidance_mask)``
    where it reads words, like :class:`igf.IterativeGatedFusion` and its peers (:data:`igf.FUSION_LAYERS`). Use
    :func:`~dcmfnet.config.build_model` rather than this constructor.

    Inputs:
        - **images**: ``(B, 3, H, W)`` float; ``H`` and ``W`` multiples of ``backbone.size_multiple``.
        - **text**: mapping with ``"input_ids"`` ``(B, T)`` long and ``"attention_mask"`` ``(B, T)``,
          as returned by :meth:`tokenize`.
        - **return_intermediates** (keyword): return a :class:`DCMFNetOutput` instead of the logits.

    Returns:
        Logits ``(B, 1, H, W)``, or a :class:`DCMFNetOutput`.

    Raises:
        TypeError: Images not a floating-point tensor, text not a mapping of integer tensors.
        ValueError: Images not ``(B, 3, H, W)``, a spatial size that is not a multiple of
            ``backbone.size_multiple``, text of another batch size or shape.

    The model knows no files: :mod:`dcmfnet.pretrained`, beside the builder, saves and loads it
    (:func:`~dcmfnet.pretrained.save_pretrained`, :func:`~dcmfnet.pretrained.load_pretrained`).
    """

    def __init__(
        self,
        *,
        backbone: VisionBackbone,
        text_encoder: TextEncoder,
        text_channels: int,
        fusion_e2: nn.Module,
        fusion_e3: nn.Module,
        fusion_e4: nn.Module,
        multi_level_channels: int,
        fusion_enc: nn.Module,
        aspp: nn.Module,
        fusion_dec: nn.Module,
        head: nn.Module,
        reads_words: bool = False,
    ) -> None:
        super().__init__()
        self.reads_words = bool(reads_words)
        c2, c3, c4 = backbone.channels[1:]
        self.backbone = backbone
        self.text_encoder = text_encoder
        self.text_proj = nn.Linear(text_encoder.out_channels, text_channels)
        self.fusion_e2 = fusion_e2
        self.fusion_e3 = fusion_e3
        self.fusion_e4 = fusion_e4
        self.multi_level = ConvBN(c2 + c3 + c4, multi_level_channels, relu=False)
        self.fusion_enc = fusion_enc
        self.aspp = aspp
        self.fusion_dec = fusion_dec
        self.head = head

    @overload
    def forward(
        self, images: Tensor, text: Mapping[str, Tensor], *, return_intermediates: Literal[False] = ...
    ) -> Tensor: ...

    @overload
    def forward(
        self, images: Tensor, text: Mapping[str, Tensor], *, return_intermediates: Literal[True]
    ) -> DCMFNetOutput: ...

    def forward(
        self, images: Tensor, text: Mapping[str, Tensor], *, return_intermediates: bool = False
    ) -> Tensor | DCMFNetOutput:
        self._check_inputs(images, text)
        record: dict[str, IGFOutput] | None = {} if return_intermediates else None
        stages = self.backbone.stages

        # Language: L = Linear(TextEncoder(expression)), (B, C_l); or the words Linear(tokens), (B, T, C_l).
        sentence, words = self._encode_text(text["input_ids"], text["attention_mask"])
        language = _Language(sentence, words, text["attention_mask"])

        # Language-guided visual encoding, Eq. 5.
        v1 = stages[0](self.backbone.stem(images))
        v2 = stages[1](v1)
        e2 = self._fuse("e2", self.fusion_e2, language, v2, record)
        v3 = stages[2](e2)
        e3 = self._fuse("e3", self.fusion_e3, language, v3, record)  # E3 = IGF(L, V3)
        e4 = self._fuse("e4", self.fusion_e4, language, stages[3](e3), record)  # E4 = IGF(L, Stage4(E3))
        size = e4.shape[-2:]
        multi_level = self.multi_level(torch.cat([resize_to(e2, size), resize_to(e3, size), e4], dim=1))
        e_enc = self._fuse("enc", self.fusion_enc, language, multi_level, record)  # E_enc = IGF(L, M)

        # Decoder, §3.3 and Eq. 6.
        m_dec = self.aspp(e_enc)  # M_dec = ASPP(E_enc)
        # E_dec = IGF(M_dec↑, V1): IGF resizes M_dec to V1's size (projecting first, at the lower resolution).
        e_dec = self._fuse("dec", self.fusion_dec, _Language(m_dec), v1, record)
        logits = resize_to(self.head(e_dec), images.shape[-2:])

        if record is None:
            return logits
        return DCMFNetOutput(logits, sentence, v1, v2, v3, e2, e3, e4, multi_level, e_enc, m_dec, e_dec, record)

    def _encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """``L = Linear(pool(tokens))`` ``(B, C_l)``, and the words ``Linear(tokens)`` ``(B, T, C_l)`` where read."""
        if not self.reads_words:
            return self.text_proj(self.text_encoder(input_ids, attention_mask)), None
        encoder = self.text_encoder
        with torch.set_grad_enabled(torch.is_grad_enabled() and not encoder.frozen):
            tokens = encoder.encode_tokens(input_ids, attention_mask)
        return self.text_proj(pool_tokens(tokens, attention_mask, encoder.pooling)), self.text_proj(tokens)

    @staticmethod
    def _fuse(
        name: str, site: nn.Module, guidance: _Language, guided: Tensor, record: dict[str, IGFOutput] | None
    ) -> Tensor:
        """Calls a fusion site (with the words where it reads them); with ``record``, keeps an IGF's intermediates."""
        if guidance.words is None or isinstance(site, _FusionSite):
            arguments, options = (guidance.vector, guided), {}
        else:
            arguments, options = (guidance.words, guided), {"guidance_mask": guidance.mask}
        if record is None or not isinstance(site, IterativeGatedFusion):
            return cast(Tensor, site(*arguments, **options))
        output = site(*arguments, **options, return_intermediates=True)
        record[name] = output
        return output.output

    def tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, Tensor]:
        """Tokenizes expressions with the text encoder's tokenizer.

        Args:
            texts: ``B`` strings.
            max_length: Tokens per expression (paper: 15, 20 for G-Ref).

        Returns:
            ``{"input_ids": (B, max_length) long, "attention_mask": (B, max_length) long}``.
        """
        return self.text_encoder.tokenize(texts, max_length)

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters split for the paper's two learning rates.

        Returns:
            ``[{"name": "backbone", "params": [...]}, {"name": "rest", "params": [...]}]``:
            the vision encoder, and everything else (text encoder, fusion, decoder).
            Frozen parameters are left out. Add ``"lr"`` to each before passing to an optimizer.
        """
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        return [
            {"name": "backbone", "params": [p for p in trainable if id(p) in backbone_ids]},
            {"name": "rest", "params": [p for p in trainable if id(p) not in backbone_ids]},
        ]

    def _check_inputs(self, images: Tensor, text: Mapping[str, Tensor]) -> None:
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a tensor (B, 3, H, W), got {type(images).__name__}")
        if not images.is_floating_point():
            raise TypeError(f"images must be floating point (normalised), got dtype {images.dtype}")
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        multiple = self.backbone.size_multiple
        height, width = images.shape[-2:]
        if height % multiple or width % multiple:
            raise ValueError(
                f"image height and width must be multiples of {multiple} for this backbone "
                f"(its output stride), got {height}x{width}"
            )
        if not isinstance(text, Mapping) or "input_ids" not in text or "attention_mask" not in text:
            raise TypeError('text must be a mapping with "input_ids" and "attention_mask" (see DCMFNet.tokenize)')
        input_ids, attention_mask = text["input_ids"], text["attention_mask"]
        for key, value in (("input_ids", input_ids), ("attention_mask", attention_mask)):
            if not isinstance(value, Tensor) or value.dim() != 2:
                raise ValueError(f'text["{key}"] must be a (B, T) tensor, got {_describe(value)}')
        if input_ids.is_floating_point() or input_ids.is_complex():
            raise TypeError(f'text["input_ids"] must be an integer tensor, got dtype {input_ids.dtype}')
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f'text["attention_mask"] {tuple(attention_mask.shape)} must match text["input_ids"] '
                f"{tuple(input_ids.shape)}"
            )
        if input_ids.shape[0] != images.shape[0]:
            raise ValueError(f"image batch ({images.shape[0]}) and text batch ({input_ids.shape[0]}) differ in size")


class _Language(NamedTuple):
    """A site's guidance: the sentence feature (or ``M_dec``) and, where the sites read them, the words and mask."""

    vector: Tensor
    words: Tensor | None = None
    mask: Tensor | None = None


def _describe(value: object) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
