"""The list of cases a run measures, grouped by the question each group answers.

Groups (``--groups`` selects a subset):

==========  ==================================================================
gate        one gate step, ASGate vs ConvGRU vs ConvLSTM, every placement
fusion      the fusion unit, vector vs tiled guidance, every placement
igf         full IGF (L = 5, ASGate) at every placement, vector vs tiled map; on a CPU also at
            the paper's channel widths (fewer pixels)
depth       full IGF for L = 1..7 and every gate (time vs L)
compile     eager vs ``torch.compile`` (compile time reported apart)
layout      contiguous vs channels_last
precision   fp32 vs bf16 autocast (and fp16 on CUDA)
checkpoint  activation checkpointing on/off: time, peak memory and saved activations, L sweep
fused       fused (default) vs plain (``fused=False``, the step as separate PyTorch operations) fwd+bwd: time,
            saved activations and output difference, at the E3-like and E_dec-like shapes and every placement
dcmfnet     DCMFNet train step and inference, end to end
peers       IGF, FiLM, PWAM and concatenation at every placement, same widths (a padded 15-word sentence at the
            language sites, the map at E_dec); on a CPU also E_enc and E_dec at the paper's channel widths
ranks       full IGF on a sequence (B, C, T), an image and a short clip (B, C, D, H, W) with kernel (1, 3, 3)
            and (3, 3, 3), about the same number of positions, at E3's widths
tablep      DCMFNet's training step for every model of its ablation Table P (dcmfnet.ablations.tables), at the run
            config ``ablation_clean_refcocog_like`` (batch 32, 64 x 64, 16 tokens; batch 4 with --quick), each
            row's step against the full model's in alternating blocks
==========  ==================================================================

A case that several groups need (e.g. the eager fp32 IGF at the variant
placement) is measured once and tagged with every group that uses it.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import torch

from benchmarks.cases import (
    GATE_NAMES,
    PEER_LAYERS,
    FusionCase,
    GateCase,
    IGFCase,
    Pass,
    PeerCase,
    Placement,
    RankCase,
    full_width_placements,
    placements_for,
    spec_memory_placements,
)
from benchmarks.dcmfnet import DCMFNetCase, run_config_sizes, table_row

if TYPE_CHECKING:
    from dcmfnet.ablations.tables import TableId

GROUPS: tuple[str, ...] = (
    "gate",
    "fusion",
    "igf",
    "depth",
    "compile",
    "layout",
    "precision",
    "checkpoint",
    "fused",
    "dcmfnet",
    "peers",
    "ranks",
    "tablep",
)
PASSES: tuple[Pass, ...] = ("fwd", "fwdbwd")
#: The run config of the ``tablep`` group: the one Table P's runs train with (docs/guides/ablations.rst).
TABLEP_CONFIG = "ablation_clean_refcocog_like"
#: Images per step of the ``tablep`` group with ``--quick`` (the smoke run), instead of the config's batch.
TABLEP_QUICK_BATCH = 4


@dataclasses.dataclass(frozen=True)
class SuiteSettings:
    """Which placements play which role in a run.

    Attributes:
        placements: all placements (every shape table covers them).
        variant: the placement for compile / layout / precision / checkpoint-vs-L.
        depth: the placement for the L = 1..7 sweep.
        depths: the L values of the sweep.
        checkpoint_depths: the L values of the checkpointing sweep.
        precisions: the reduced precisions tried.
        dcmfnet: (config path, batch, image size) of the end-to-end cases.
        full_width: placements at the paper's channel widths where ``placements`` are narrower
            (CPU): full IGF calls are timed against their conv floor there too.
    """

    placements: tuple[Placement, ...]
    variant: Placement
    depth: Placement
    depths: tuple[int, ...]
    checkpoint_depths: tuple[int, ...]
    precisions: tuple[str, ...]
    dcmfnet: tuple[tuple[str, int, int], ...]
    full_width: tuple[Placement, ...] = ()
    peer_full_width: tuple[Placement, ...] = ()


def settings_for(device: torch.device, quick: bool, output_stride: int = 8) -> SuiteSettings:
    """The suite layout for a device; ``quick`` is the reduced CPU smoke set."""
    ps = placements_for(device, quick, output_stride)
    by_name = {p.name: p for p in ps}
    if quick:
        return SuiteSettings(
            ps,
            by_name["E3"],
            by_name["E_enc"],
            (1, 2),
            (5,),
            ("bf16",),
            (("model_cpu", 2, 64),),
        )
    if device.type == "cuda":
        from dcmfnet.configs import available_configs

        dcm = tuple((name, 6, 480) for name in available_configs() if name.startswith("paper_"))
        return SuiteSettings(
            ps, by_name["E3"], by_name["E_enc"], tuple(range(1, 8)), (1, 3, 5, 7), ("bf16", "fp16"), dcm
        )
    return SuiteSettings(
        ps,
        by_name["E3"],
        by_name["E_enc"],
        tuple(range(1, 8)),
        (1, 3, 5, 7),
        ("bf16",),
        (("model_cpu", 6, 64),),
        full_width_placements(),
        tuple(p for p in full_width_placements() if p.name in ("E_enc-full-width", "E_dec-full-width")),
    )


def _guidances(p: Placement) -> tuple[str, ...]:
    return ("vector", "tiled") if p.vector_guidance else ("map",)


def rank_shapes(quick: bool) -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """(guided size, kernel) of the ``ranks`` group: a sequence, an image and a clip of about as many positions.

    CPU and GPU: T = 225, 15 x 15 and 4 x 8 x 8 (256) positions at the variant placement's widths (on a CPU, E3
    reduced); the clip with kernel (1, 3, 3) (no mixing of frames) and (3, 3, 3).
    """
    if quick:
        return (((16,), (3,)), ((4, 4), (3, 3)), ((2, 4, 4), (1, 3, 3)), ((2, 4, 4), (3, 3, 3)))
    return (((225,), (3,)), ((15, 15), (3, 3)), ((4, 8, 8), (1, 3, 3)), ((4, 8, 8), (3, 3, 3)))


def table_cases(table: TableId, config: str, quick: bool) -> list[DCMFNetCase]:
    """One fp32 training-step case per distinct model (row key) of an ablation table, in the table's order.

    Each case is ``config``'s model with the row's switches (:func:`benchmarks.dcmfnet.model_config`), at the run
    config's batch, image size and expression length (:func:`benchmarks.dcmfnet.run_config_sizes`), the batch
    :data:`TABLEP_QUICK_BATCH` with ``quick``.

    Args:
        table: The table's name in ``dcmfnet.ablations.tables.TABLES`` (``"P"``).
        config: A shipped run config's name, or the path of one.
        quick: Use the smoke run's batch.
    """
    from dcmfnet.ablations.tables import TABLES

    batch, size, tokens = run_config_sizes(config)
    batch = TABLEP_QUICK_BATCH if quick else batch
    keys = TABLES[table].keys()
    return [DCMFNetCase(config, "train", batch, size, tokens, table=table, row=key) for key in keys]


def build_suite(
    device: torch.device, quick: bool, groups: tuple[str, ...] = GROUPS, output_stride: int = 8
) -> list[tuple[Any, list[str]]]:
    """Cases to run, each with the groups that use it, in run order.

    The quick set measures one placement per group and mostly forward+backward:
    it exercises every code path (floor, memory, compile, plots) in about a minute.
    """
    s = settings_for(device, quick, output_stride)
    tagged: dict[Any, list[str]] = {}

    def add(group: str, case: Any) -> None:
        if group in groups:
            tagged.setdefault(case, [])
            if group not in tagged[case]:
                tagged[case].append(group)

    v = s.variant
    passes: tuple[Pass, ...] = ("fwdbwd",) if quick else PASSES
    shape_placements = (v, s.placements[-1]) if quick else s.placements
    for p in (v,) if quick else s.placements:
        for pass_ in passes:
            for gate in GATE_NAMES:
                add("gate", GateCase(p, gate, pass_))
            for g in _guidances(p):
                add("fusion", FusionCase(p, g, pass_))  # type: ignore[arg-type]
    for p in shape_placements:
        for pass_ in PASSES:
            for g in _guidances(p):
                add("igf", IGFCase(p, pass_, guidance=g))  # type: ignore[arg-type]
    for p in s.full_width:
        for pass_ in PASSES:
            add("igf", IGFCase(p, pass_, guidance=_guidances(p)[0]))  # type: ignore[arg-type]
    for pass_ in passes:
        for gate in GATE_NAMES:
            for L in s.depths:
                add("depth", IGFCase(s.depth, pass_, gate=gate, layers=L))
    for pass_ in PASSES:
        add("layout", IGFCase(v, pass_))
        add("layout", IGFCase(v, pass_, channels_last=True))
        add("precision", IGFCase(v, pass_))
        for prec in s.precisions:
            add("precision", IGFCase(v, pass_, precision=prec))  # type: ignore[arg-type]
    for L in s.checkpoint_depths:
        add("checkpoint", IGFCase(v, "fwdbwd", layers=L))
        add("checkpoint", IGFCase(v, "fwdbwd", layers=L, checkpoint=True))
    for p in () if quick else s.placements:
        g = _guidances(p)[0]
        add("checkpoint", IGFCase(p, "fwdbwd", guidance=g))  # type: ignore[arg-type]
        add("checkpoint", IGFCase(p, "fwdbwd", guidance=g, checkpoint=True))  # type: ignore[arg-type]
    for p in (v,) if quick else (*spec_memory_placements(), *s.placements):
        g = _guidances(p)[0]
        for fused in (True, False):
            add("fused", IGFCase(p, "fwdbwd", guidance=g, fused=fused))  # type: ignore[arg-type]
    # compile last among the IGF cases: it is the slowest to set up.
    compile_placement = s.depth if quick else v
    for pass_ in ("fwd",) if quick else PASSES:
        add("compile", IGFCase(compile_placement, pass_))
        add("compile", IGFCase(compile_placement, pass_, compiled=True))
    peer_placements = (v, s.placements[-1]) if quick else (*s.placements, *s.peer_full_width)
    for p in peer_placements:
        for pass_ in passes:
            for layer in PEER_LAYERS:
                add("peers", PeerCase(p, layer, pass_))
    for rank_size, kernel in rank_shapes(quick):
        for pass_ in passes:
            add("ranks", RankCase(v, rank_size, kernel, pass_))
    for config, batch, size in s.dcmfnet:
        for dpass in ("infer", "train"):
            add("dcmfnet", DCMFNetCase(config, dpass, batch, size))
    if "tablep" in groups:  # the only group that needs dcmfnet's tables to list its cases
        for case in table_cases("P", TABLEP_CONFIG, quick):
            add("tablep", case)
    return [(c, g) for c, g in tagged.items()]


def comparison_pairs(cases: list[Any], *, include_compiled: bool = True) -> list[tuple[Any, Any]]:
    """The (numerator, denominator) case pairs behind the targets of :mod:`benchmarks.targets`, among ``cases``.

    Each pair is re-timed in alternating blocks so that its ratio does not drift with
    the machine's load: ConvLSTM / ASGate and ConvGRU / ASGate gate steps (fwd+bwd),
    checkpointing on / off at L = 5, tiled map / vector guidance, compiled / eager,
    fused / plain, channels_last / contiguous; each peer layer / IGF at the same placement and pass; and each
    ablation-table row's DCMFNet step / the full model's (the table's full row) at the same settings.
    """
    present = set(cases)
    pairs: list[tuple[Any, Any]] = []
    full_rows = {
        dataclasses.replace(c, row=""): c
        for c in cases
        if isinstance(c, DCMFNetCase) and c.table is not None and table_row(c.table, c.row).is_full
    }
    for c in cases:
        if isinstance(c, GateCase) and c.gate == "asgate" and c.pass_ == "fwdbwd":
            pairs += [(dataclasses.replace(c, gate=g), c) for g in ("convlstm", "convgru")]
        elif isinstance(c, IGFCase) and c.checkpoint and c.layers == 5:
            pairs.append((c, dataclasses.replace(c, checkpoint=False)))
        elif isinstance(c, (IGFCase, FusionCase)) and c.guidance == "tiled":
            pairs.append((c, dataclasses.replace(c, guidance="vector")))
        elif isinstance(c, IGFCase) and c.compiled and include_compiled:
            pairs.append((c, dataclasses.replace(c, compiled=False)))
        elif isinstance(c, IGFCase) and not c.fused:
            pairs.append((dataclasses.replace(c, fused=True), c))
        elif isinstance(c, IGFCase) and c.channels_last:
            pairs.append((c, dataclasses.replace(c, channels_last=False)))
        elif isinstance(c, PeerCase) and c.layer != "igf":
            pairs.append((c, dataclasses.replace(c, layer="igf")))
        elif isinstance(c, DCMFNetCase) and c.table is not None:
            full = full_rows.get(dataclasses.replace(c, row=""))
            if full is not None and full != c:
                pairs.append((c, full))
    return [(a, b) for a, b in pairs if a in present and b in present]
