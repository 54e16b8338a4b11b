"""What is benchmarked: shapes, cases, and how each case becomes a callable.

Shapes (:func:`paper_placements`) are the four IGF placements of DCMFNet
(paper §3.2 and §4.1) with a DeepLab ResNet-101 backbone, a 480x480 input and
batch 6. ResNet-101 stage outputs: V1 256 ch at 1/4 (120x120); V2 512 ch at 1/8
(60x60); V3 1024 ch and stage 4 2048 ch at 1/8 with output stride 8 (DeepLab v2,
stages 3 and 4 dilated; the default here, the heavier setting) or at 1/16
(30x30) with output stride 16 (the shipped config ``paper_resnet101``).
The sentence feature is projected to C_l = 256; ASPP outputs 256 channels.
Widths follow paper §4.1 as ``dcmfnet/config.py`` builds them:

======  ====================  ========================  =====  =====  ====
IGF     guidance X            guided Y (OS8)            C'_v   C'_l   out
======  ====================  ========================  =====  =====  ====
E3      L (6, 256) vector     V3 (6, 1024, 60, 60)       512    256   1024
E4      L (6, 256) vector     S4(E3) (6, 2048, 60, 60)  1024    256   2048
E_enc   L (6, 256) vector     M (6, 256, 60, 60)         256    256    256
E_dec   M_dec (6, 256, 60,    V1 (6, 256, 120, 120)      128    128    128
        60) map, resized
======  ====================  ========================  =====  =====  ====

(OS16: every 60x60 above is 30x30; E_dec's guidance is (6, 256, 30, 30).)

CPU runs use :func:`reduced` copies of the OS8 placements: batch 2, channels / 4,
spatial size / 4 (e.g. E3: X (2, 64), Y (2, 256, 15, 15), C'_v 128, C'_l 64), and
measure full IGF calls also at :func:`full_width_placements` (the paper's channels,
batch 1, fewer pixels: the placement's own balance of convolution and elementwise work).

Every case is a frozen dataclass; :meth:`build` returns a
:class:`~benchmarks.workload.Workload` (the callable that is timed, the eager
callable used for FLOPs and the conv floor, shapes and parameter count). The
DCMFNet end-to-end case lives in :mod:`benchmarks.dcmfnet`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, Protocol

import torch
from torch import nn

from benchmarks.workload import Precision, Workload, autocast_context
from igf.saved_activations import saved_bytes

Pass = Literal["fwd", "fwdbwd"]
Guidance = Literal["vector", "tiled", "map"]

GATE_NAMES: tuple[str, ...] = ("asgate", "convgru", "convlstm")


@dataclasses.dataclass(frozen=True)
class Placement:
    """Input and width settings of one IGF in DCMFNet.

    Attributes:
        name: where the IGF sits ("E3", "E4", "E_enc", "E_dec").
        batch: B.
        guidance_channels: C_x of the guidance X.
        guidance_size: (h, w) of a guidance map, or ``None`` for a vector (B, C_x).
        guided_channels: C_y of the guided Y.
        size: (H, W) of Y.
        hidden_channels: C'_v.
        guidance_hidden_channels: C'_l.
        out_channels: channels of the IGF output.
    """

    name: str
    batch: int
    guidance_channels: int
    guidance_size: tuple[int, int] | None
    guided_channels: int
    size: tuple[int, int]
    hidden_channels: int
    guidance_hidden_channels: int
    out_channels: int

    @property
    def vector_guidance(self) -> bool:
        return self.guidance_size is None

    def describe(self) -> str:
        b, (h, w) = self.batch, self.size
        if self.guidance_size is None:
            x = f"({b}, {self.guidance_channels})"
        else:
            x = f"({b}, {self.guidance_channels}, {self.guidance_size[0]}, {self.guidance_size[1]})"
        return (
            f"{self.name}: X {x}, Y ({b}, {self.guided_channels}, {h}, {w}), "
            f"C'_v {self.hidden_channels}, C'_l {self.guidance_hidden_channels}, out {self.out_channels}"
        )


def paper_placements(output_stride: int = 8) -> tuple[Placement, ...]:
    """The four IGF placements of DCMFNet-Res101 at 480x480, batch 6 (see the module docstring)."""
    if output_stride not in (8, 16):
        raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
    s = 480 // output_stride
    return (
        Placement("E3", 6, 256, None, 1024, (s, s), 512, 256, 1024),
        Placement("E4", 6, 256, None, 2048, (s, s), 1024, 256, 2048),
        Placement("E_enc", 6, 256, None, 256, (s, s), 256, 256, 256),
        Placement("E_dec", 6, 256, (s, s), 256, (120, 120), 128, 128, 128),
    )


def reduced(p: Placement, *, batch: int = 2, channel_div: int = 4, spatial_div: int = 4) -> Placement:
    """A smaller copy of ``p`` for CPU runs (same structure, fewer channels and pixels)."""

    def hw(s: tuple[int, int]) -> tuple[int, int]:
        return (max(1, s[0] // spatial_div), max(1, s[1] // spatial_div))

    return Placement(
        name=p.name,
        batch=batch,
        guidance_channels=max(1, p.guidance_channels // channel_div),
        guidance_size=None if p.guidance_size is None else hw(p.guidance_size),
        guided_channels=max(1, p.guided_channels // channel_div),
        size=hw(p.size),
        hidden_channels=max(1, p.hidden_channels // channel_div),
        guidance_hidden_channels=max(1, p.guidance_hidden_channels // channel_div),
        out_channels=max(1, p.out_channels // channel_div),
    )


def full_width(p: Placement, *, spatial_div: int) -> Placement:
    """A copy of ``p`` at the paper's channel widths, batch 1 and ``H, W / spatial_div``, named ``<name>-full-width``.

    Per pixel, a convolution's work grows with channels squared and elementwise work with
    channels, so :func:`reduced`'s channels / 4 makes elementwise work 4x heavier relative to
    the convolutions than at the placement itself. These copies keep the placement's
    per-pixel balance and save time with fewer pixels instead.
    """
    return dataclasses.replace(reduced(p, batch=1, channel_div=1, spatial_div=spatial_div), name=f"{p.name}-full-width")


def full_width_placements() -> tuple[Placement, ...]:
    """The four placements at full width for CPU runs (E4, the widest, at a quarter of the others' pixels)."""
    spatial_div = {"E3": 4, "E4": 8, "E_enc": 4, "E_dec": 4}
    return tuple(full_width(p, spatial_div=spatial_div[p.name]) for p in paper_placements(8))


def spec_memory_placements() -> tuple[Placement, ...]:
    """The two IGF shapes at which the saved-activation targets are set (E3-like and E_dec-like, batch 2)."""
    return (
        Placement("E3-like", 2, 256, None, 128, (30, 30), 64, 64, 128),
        Placement("E_dec-like", 2, 64, (15, 15), 32, (60, 60), 32, 32, 32),
    )


def placements_for(device: torch.device, quick: bool, output_stride: int = 8) -> tuple[Placement, ...]:
    """The placements benchmarked on ``device``: the paper's on CUDA, reduced OS8 ones on CPU."""
    if quick:
        return tuple(reduced(p, batch=1, channel_div=16, spatial_div=4) for p in paper_placements(8))
    if device.type == "cuda":
        return paper_placements(output_stride)
    return tuple(reduced(p) for p in paper_placements(8))


# --------------------------------------------------------------------------- workloads


class Case(Protocol):
    """What every case provides: a kind ("gate", "fusion", "igf", "dcmfnet"), a unique name,
    its settings as JSON fields, and :meth:`build`."""

    kind: str

    @property
    def name(self) -> str: ...

    def fields(self) -> dict[str, Any]: ...

    def build(self, device: torch.device) -> Workload: ...


def _randn(
    shape: tuple[int, ...],
    device: torch.device,
    gen: torch.Generator,
    channels_last: bool = False,
    requires_grad: bool = False,
) -> torch.Tensor:
    t = torch.randn(shape, generator=gen).to(device)
    if channels_last and t.dim() == 4:
        t = t.contiguous(memory_format=torch.channels_last)
    return t.requires_grad_(requires_grad)


def _make_step(
    module: Callable[..., Any],
    inputs: tuple[torch.Tensor | None, ...],
    kwargs: dict[str, Any],
    pass_: Pass,
    device: torch.device,
    precision: Precision,
    grad_out: torch.Tensor | None,
) -> Callable[[], Any]:
    """Forward (under ``no_grad``) or forward + backward (with a fixed output gradient)."""
    if pass_ == "fwd":

        def fwd() -> Any:
            with torch.no_grad(), autocast_context(device, precision):
                return module(*inputs, **kwargs)

        return fwd

    assert grad_out is not None

    def fwdbwd() -> None:
        with autocast_context(device, precision):
            out = module(*inputs, **kwargs)
        if isinstance(out, tuple):
            out = out[0]
        out.backward(grad_out.to(out.dtype))

    return fwdbwd


def _finish(
    module: nn.Module,
    inputs: tuple[torch.Tensor | None, ...],
    kwargs: dict[str, Any],
    out_shape: torch.Size,
    pass_: Pass,
    device: torch.device,
    precision: Precision,
    compiled: bool,
    channels_last: bool,
    gen: torch.Generator,
    shapes: dict[str, list[int]],
    items: int,
) -> Workload:
    from benchmarks.timing import wall_time

    grad_out = _randn(tuple(out_shape), device, gen, channels_last) if pass_ == "fwdbwd" else None
    reference = _make_step(module, inputs, kwargs, pass_, device, precision, grad_out)
    step, compile_seconds = reference, None
    if compiled:
        compiled_module = torch.compile(module)
        step = _make_step(compiled_module, inputs, kwargs, pass_, device, precision, grad_out)
        compile_seconds = wall_time(step, device)
    return Workload(step, reference, shapes, sum(p.numel() for p in module.parameters()), items, compile_seconds)


@dataclasses.dataclass(frozen=True)
class GateCase:
    """One gate step G_t = gate(F_t, G_{t-1}[, c_{t-1}]) at a placement's hidden shape (B, C'_v, H, W)."""

    placement: Placement
    gate: str
    pass_: Pass
    precision: Precision = "fp32"
    kind: str = "gate"

    @property
    def name(self) -> str:
        return f"gate/{self.placement.name}/{self.gate}/{self.pass_}/{self.precision}"

    def fields(self) -> dict[str, Any]:
        return {
            "placement": self.placement.name,
            "gate": self.gate,
            "pass": self.pass_,
            "precision": self.precision,
            "compiled": False,
            "channels_last": False,
        }

    def build(self, device: torch.device) -> Workload:
        import igf

        gen = torch.Generator().manual_seed(0)
        p = self.placement
        c = p.hidden_channels
        torch.manual_seed(0)
        module = igf.GATES[self.gate](c, kernel_size=3, device=device, dtype=None)
        shape = (p.batch, c, *p.size)
        grad = self.pass_ == "fwdbwd"
        fused, hidden = _randn(shape, device, gen, requires_grad=grad), _randn(shape, device, gen, requires_grad=grad)
        cell = _randn(shape, device, gen, requires_grad=grad) if self.gate == "convlstm" else None
        return _finish(
            module,
            (fused, hidden, cell),
            {},
            torch.Size(shape),
            self.pass_,
            device,
            self.precision,
            False,
            False,
            gen,
            {"fused": list(shape), "hidden": list(shape)},
            p.batch,
        )


@dataclasses.dataclass(frozen=True)
class FusionCase:
    """One fusion unit F_t = BilinearFusionUnit(x, G_{t-1}) at a placement's hidden shape."""

    placement: Placement
    guidance: Guidance
    pass_: Pass
    precision: Precision = "fp32"
    kind: str = "fusion"

    @property
    def name(self) -> str:
        return f"fusion/{self.placement.name}/{self.guidance}/{self.pass_}/{self.precision}"

    def fields(self) -> dict[str, Any]:
        return {
            "placement": self.placement.name,
            "guidance": self.guidance,
            "pass": self.pass_,
            "precision": self.precision,
            "compiled": False,
            "channels_last": False,
        }

    def build(self, device: torch.device) -> Workload:
        import igf

        gen = torch.Generator().manual_seed(0)
        p = self.placement
        torch.manual_seed(0)
        module = igf.BilinearFusionUnit(p.guidance_hidden_channels, p.hidden_channels, device=device)
        grad = self.pass_ == "fwdbwd"
        shape = (p.batch, p.hidden_channels, *p.size)
        x_shape: tuple[int, ...] = (p.batch, p.guidance_hidden_channels)
        x = _randn(x_shape, device, gen)
        if self.guidance != "vector":
            x = x[:, :, None, None].expand(*x_shape, *p.size).contiguous()
        x.requires_grad_(grad)
        guided = _randn(shape, device, gen, requires_grad=grad)
        return _finish(
            module,
            (x, guided),
            {},
            torch.Size(shape),
            self.pass_,
            device,
            self.precision,
            False,
            False,
            gen,
            {"guidance": list(x.shape), "guided": list(shape)},
            p.batch,
        )


@dataclasses.dataclass(frozen=True)
class IGFCase:
    """A full ``IterativeGatedFusion`` call and its variants.

    ``guidance`` is "vector" (B, C_x), "tiled" (the same vector repeated to a
    (B, C_x, H, W) map at Y's size) or "map" (the placement's own guidance map).
    """

    placement: Placement
    pass_: Pass
    gate: str = "asgate"
    layers: int = 5
    compiled: bool = False
    channels_last: bool = False
    precision: Precision = "fp32"
    guidance: Guidance = "vector"
    checkpoint: bool = False
    fused: bool = True
    kind: str = "igf"

    @property
    def name(self) -> str:
        flags = [
            f
            for f, on in (
                ("compiled", self.compiled),
                ("channels_last", self.channels_last),
                ("checkpoint", self.checkpoint),
                ("plain", not self.fused),
            )
            if on
        ]
        return "/".join(
            [
                "igf",
                self.placement.name,
                self.gate,
                f"L{self.layers}",
                self.pass_,
                self.precision,
                self.guidance,
                *flags,
            ]
        )

    def fields(self) -> dict[str, Any]:
        return {
            "placement": self.placement.name,
            "gate": self.gate,
            "layers": self.layers,
            "pass": self.pass_,
            "compiled": self.compiled,
            "channels_last": self.channels_last,
            "precision": self.precision,
            "guidance": self.guidance,
            "checkpoint": self.checkpoint,
            "fused": self.fused,
        }

    def build(self, device: torch.device) -> Workload:
        import igf

        gen = torch.Generator().manual_seed(0)
        p = self.placement
        torch.manual_seed(0)
        module = igf.IterativeGatedFusion(
            p.guidance_channels,
            p.guided_channels,
            num_layers=self.layers,
            gate=self.gate,
            hidden_channels=p.hidden_channels,
            guidance_hidden_channels=p.guidance_hidden_channels,
            out_channels=p.out_channels,
            checkpoint=self.checkpoint,
            fused=self.fused,
            device=device,
        )
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
        grad = self.pass_ == "fwdbwd"
        y_shape = (p.batch, p.guided_channels, *p.size)
        if self.guidance == "map":
            assert p.guidance_size is not None, f"{p.name} has vector guidance"
            x = _randn((p.batch, p.guidance_channels, *p.guidance_size), device, gen, self.channels_last)
        else:
            x = _randn((p.batch, p.guidance_channels), device, gen)
            if self.guidance == "tiled":
                x = (
                    x[:, :, None, None]
                    .expand(-1, -1, *p.size)
                    .contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
                )
        x.requires_grad_(grad)
        y = _randn(y_shape, device, gen, self.channels_last, requires_grad=grad)
        out_shape = torch.Size((p.batch, p.out_channels, *p.size))
        module.train(grad)
        work = _finish(
            module,
            (x, y),
            {},
            out_shape,
            self.pass_,
            device,
            self.precision,
            self.compiled,
            self.channels_last,
            gen,
            {"guidance": list(x.shape), "guided": list(y_shape)},
            p.batch,
        )
        if grad:

            def forward() -> Any:
                with autocast_context(device, self.precision):
                    return module(x, y)

            work.forward = forward
            work.saved_bytes = saved_bytes(module, forward)
            work.map_bytes = p.batch * p.hidden_channels * p.size[0] * p.size[1] * 4
        return work


# --------------------------------------------------------------------------- peers and ranks

#: The fusion layers compared at DCMFNet's placements (the names of :func:`igf.build_fusion_layer`).
PEER_LAYERS: tuple[str, ...] = ("igf", "film", "pwam", "concat")
#: Words per sentence of the token guidance at the language sites (RefCOCO-style expressions: 15 tokens, padded).
SENTENCE_TOKENS = 15


def sentence_mask(batch: int, tokens: int = SENTENCE_TOKENS) -> torch.Tensor:
    """A ``(B, T)`` bool padding mask (True = real word): sample ``i`` has ``T - 6 i mod T`` real words."""
    lengths = torch.tensor([tokens - (6 * i) % tokens for i in range(batch)])
    return torch.arange(tokens)[None, :] < lengths[:, None]


def peer_options(layer: str, p: Placement) -> dict[str, Any]:
    """The widths of ``layer`` at placement ``p``: IGF's own (L = 5, ASGate); PWAM's key width and
    concatenation's hidden width equal IGF's C'_v; FiLM has no hidden width."""
    if layer == "igf":
        return {
            "num_layers": 5,
            "gate": "asgate",
            "hidden_channels": p.hidden_channels,
            "guidance_hidden_channels": p.guidance_hidden_channels,
        }
    if layer == "pwam":
        return {"key_channels": p.hidden_channels}
    if layer == "concat":
        return {"hidden_channels": p.hidden_channels}
    return {}


@dataclasses.dataclass(frozen=True)
class PeerCase:
    """One call of IGF or a peer (FiLM, PWAM, concatenation) at a DCMFNet placement, same input and output widths.

    At the language sites (E3, E4, E_enc) the guidance is a sentence of :data:`SENTENCE_TOKENS` word features
    ``(B, T, C_x)`` with a padding mask (:func:`sentence_mask`): PWAM attends over the real words, IGF, FiLM and
    concatenation take their masked mean (a single sentence vector would leave PWAM's output independent of the
    guidance: every position attends to the one token with weight 1 and the instance norm maps the constant
    result to zero). At E_dec the guidance is the placement's map (PWAM: its positions are the tokens).
    """

    placement: Placement
    layer: str
    pass_: Pass
    precision: Precision = "fp32"
    kind: str = "peer"

    @property
    def guidance(self) -> str:
        return "tokens" if self.placement.vector_guidance else "map"

    @property
    def name(self) -> str:
        return f"peer/{self.placement.name}/{self.layer}/{self.pass_}/{self.precision}/{self.guidance}"

    def fields(self) -> dict[str, Any]:
        return {
            "placement": self.placement.name,
            "layer": self.layer,
            "pass": self.pass_,
            "precision": self.precision,
            "guidance": self.guidance,
            "compiled": False,
            "channels_last": False,
        }

    def build(self, device: torch.device) -> Workload:
        import igf

        gen = torch.Generator().manual_seed(0)
        p = self.placement
        torch.manual_seed(0)
        module = igf.build_fusion_layer(
            self.layer,
            guidance_channels=p.guidance_channels,
            guided_channels=p.guided_channels,
            out_channels=p.out_channels,
            device=device,
            **peer_options(self.layer, p),
        )
        grad = self.pass_ == "fwdbwd"
        kwargs: dict[str, Any] = {}
        if p.guidance_size is None:
            x = _randn((p.batch, SENTENCE_TOKENS, p.guidance_channels), device, gen)
            kwargs["guidance_mask"] = sentence_mask(p.batch).to(device)
        else:
            x = _randn((p.batch, p.guidance_channels, *p.guidance_size), device, gen)
        x.requires_grad_(grad)
        y_shape = (p.batch, p.guided_channels, *p.size)
        y = _randn(y_shape, device, gen, requires_grad=grad)
        module.train(grad)
        shapes = {"guidance": list(x.shape), "guided": list(y_shape)}
        work = _finish(
            module,
            (x, y),
            kwargs,
            torch.Size((p.batch, p.out_channels, *p.size)),
            self.pass_,
            device,
            self.precision,
            False,
            False,
            gen,
            shapes,
            p.batch,
        )
        if grad:

            def forward() -> Any:
                with autocast_context(device, self.precision):
                    return module(x, y, **kwargs)

            work.forward = forward
            work.saved_bytes = saved_bytes(module, forward)
            # in IGF's unit at this placement: one (B, C'_v, H, W) float32 map
            work.map_bytes = p.batch * p.hidden_channels * p.size[0] * p.size[1] * 4
        return work


@dataclasses.dataclass(frozen=True)
class RankCase:
    """A full IGF call (L = 5, ASGate, a sentence vector as guidance) on a guided map of rank 1, 2 or 3.

    ``placement`` gives the widths (C_x, C_y, C'_v, C'_l, out) and the batch; ``size`` the guided map's
    spatial size, one entry per dimension: ``(T,)`` for a sequence ``(B, C_y, T)``, ``(H, W)`` for an image,
    ``(D, H, W)`` for a short clip; ``kernel`` the gates' and output convolution's kernel, one entry per
    dimension (``(1, 3, 3)`` mixes no frames, ``(3, 3, 3)`` does).
    """

    placement: Placement
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    pass_: Pass
    precision: Precision = "fp32"
    kind: str = "rank"

    @property
    def spatial_dims(self) -> int:
        return len(self.size)

    @property
    def name(self) -> str:
        size, kernel = "x".join(map(str, self.size)), "x".join(map(str, self.kernel))
        return f"rank/{self.spatial_dims}d/{self.placement.name}/{size}/k{kernel}/{self.pass_}/{self.precision}"

    def fields(self) -> dict[str, Any]:
        return {
            "placement": self.placement.name,
            "spatial_dims": self.spatial_dims,
            "size": list(self.size),
            "kernel": list(self.kernel),
            "pass": self.pass_,
            "precision": self.precision,
            "guidance": "vector",
            "compiled": False,
            "channels_last": False,
        }

    def build(self, device: torch.device) -> Workload:
        import igf

        if len(self.kernel) != len(self.size):
            raise ValueError(f"kernel {self.kernel} and size {self.size} must have one entry per dimension")
        gen = torch.Generator().manual_seed(0)
        p = self.placement
        torch.manual_seed(0)
        module = igf.IterativeGatedFusion(
            p.guidance_channels,
            p.guided_channels,
            num_layers=5,
            gate="asgate",
            hidden_channels=p.hidden_channels,
            guidance_hidden_channels=p.guidance_hidden_channels,
            out_channels=p.out_channels,
            kernel_size=self.kernel,
            spatial_dims=self.spatial_dims,
            device=device,
        )
        grad = self.pass_ == "fwdbwd"
        x = _randn((p.batch, p.guidance_channels), device, gen, requires_grad=grad)
        y_shape = (p.batch, p.guided_channels, *self.size)
        y = _randn(y_shape, device, gen, requires_grad=grad)
        module.train(grad)
        work = _finish(
            module,
            (x, y),
            {},
            torch.Size((p.batch, p.out_channels, *self.size)),
            self.pass_,
            device,
            self.precision,
            False,
            False,
            gen,
            {"guidance": list(x.shape), "guided": list(y_shape)},
            p.batch,
        )
        if grad:

            def forward() -> Any:
                with autocast_context(device, self.precision):
                    return module(x, y)

            work.forward = forward
            work.saved_bytes = saved_bytes(module, forward)
            positions = 1
            for s in self.size:
                positions *= s
            work.map_bytes = p.batch * p.hidden_channels * positions * 4
        return work
