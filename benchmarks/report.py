"""Markdown tables, the benchmark targets (:mod:`benchmarks.targets`) and PNG plots from the JSON records."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.targets import TARGETS

Record = dict[str, Any]

MIB = 2**20


# --------------------------------------------------------------------------- lookups


def _ok(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if "error" not in r and "time_s" in r]


def _find(records: list[Record], **want: Any) -> Record | None:
    """The first successful record whose fields equal ``want``."""
    for r in _ok(records):
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


#: (numerator name, denominator name) -> comparison record timed in alternating blocks (set by ``markdown``).
_PAIRED: dict[tuple[str, str], Record] = {}


def _ratios(num: Record | None, den: Record | None) -> tuple[float | None, float | None]:
    """Time ratio num/den by medians and by fastest blocks.

    Uses the pair's re-timing in alternating blocks when the run made one (robust to a
    machine whose load changes between the two cases), else the two cases' own timings.
    """
    if num is None or den is None:
        return None, None
    paired = _PAIRED.get((num["name"], den["name"]))
    if paired is not None and "error" not in paired:
        return paired["ratio_median"], paired["ratio_min"]
    return num["time_s"]["median"] / den["time_s"]["median"], num["time_s"]["min"] / den["time_s"]["min"]


def _fmt(x: float | None, spec: str = ".2f", none: str = "–") -> str:
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    if value is None:
        return "not measured"
    met = value >= target if higher_is_better else value <= target
    if met:
        return "met"
    gap = (target / value) if higher_is_better else (value / target)
    return f"missed ({gap:.2f}x off)"


IGF_BASE = dict(
    kind="igf",
    gate="asgate",
    layers=5,
    compiled=False,
    channels_last=False,
    precision="fp32",
    checkpoint=False,
    fused=True,
)

#: Saved-activation targets (maps of (B, C'_v, H, W) float32) of the fused path at the E3-like and E_dec-like shapes.
SAVED_MAP_TARGETS = {p: TARGETS[f"saved_maps_{p}"].value for p in ("E3-like", "E_dec-like")}
IGF_KEYS = ("kind", "placement", "gate", "layers", "pass", "compiled", "channels_last", "precision", "guidance")


def _twin(records: list[Record], r: Record, **change: Any) -> Record | None:
    """The successful record equal to ``r`` in every IGF setting except ``change``."""
    return _find(records, **{**{k: r[k] for k in (*IGF_KEYS, "checkpoint", "fused") if k in r}, **change})


def _row(what: str, value: str, fastest: str, target: str, verdict: str) -> list[str]:
    return [what, value, fastest, target, verdict]


def fused_rows(records: list[Record]) -> list[list[str]]:
    """Fused vs plain (``fused=False``) at each placement: saved maps, time ratio, output difference."""
    rows: list[list[str]] = []
    for plain in _ok(records):
        if plain["kind"] != "igf" or plain.get("fused", True) or plain.get("checkpoint"):
            continue
        fused = _twin(records, plain, fused=True)
        if fused is None:
            continue
        p = plain["placement"]
        maps, target = fused.get("saved_maps"), SAVED_MAP_TARGETS.get(p)
        rows.append(
            _row(
                f"fused step at {p}: saved activations, maps (plain: {_fmt(plain.get('saved_maps'), '.1f')})",
                _fmt(maps, ".1f"),
                "",
                "–" if target is None else f"<= {target:g}",
                "info" if target is None else _verdict(maps, target, False),
            )
        )
        ratio, ratio_min = _ratios(fused, plain)
        rows.append(
            _row(
                f"fused step fwd+bwd at {p}: fused time / plain time",
                _fmt(ratio),
                _fmt(ratio_min),
                f"<= {TARGETS['fused_time'].value:g}",
                _verdict(ratio, TARGETS["fused_time"].value, False),
            )
        )
        diff = _PAIRED.get((fused["name"], plain["name"]), {}).get("max_abs_output_diff")
        rows.append(
            _row(
                f"fused step at {p}: max abs output difference to plain",
                _fmt(diff, ".1e"),
                "",
                f"<= {TARGETS['output_difference'].value:g}",
                _verdict(diff, TARGETS["output_difference"].value, False),
            )
        )
    return rows


def checkpoint_rows(records: list[Record]) -> list[list[str]]:
    """Checkpointing on / off at L = 5: saved-activation cut, peak-memory cut, time ratio."""
    rows: list[list[str]] = []
    cut_target = TARGETS["checkpoint_cut"].value
    for r in _ok(records):
        if not (r["kind"] == "igf" and r["checkpoint"] and r["layers"] == 5 and r["pass"] == "fwdbwd"):
            continue
        base = _twin(records, r, checkpoint=False)
        if base is None:
            continue
        p = f"checkpointing, L=5, {r['placement']}{'' if r.get('fused', True) else ' (plain)'}"
        if r.get("saved_bytes") and base.get("saved_bytes"):
            cut = 1 - r["saved_bytes"] / base["saved_bytes"]
            maps = f"{_fmt(base.get('saved_maps'), '.1f')} -> {_fmt(r.get('saved_maps'), '.1f')} maps"
            rows.append(
                _row(
                    f"{p}: saved-activation cut ({maps})",
                    f"{cut:.0%}",
                    "",
                    f">= {cut_target:.0%}",
                    _verdict(cut, cut_target, True),
                )
            )
        if "peak_memory_bytes" in r and base.get("peak_memory_bytes"):
            peak_cut = 1 - r["peak_memory_bytes"] / base["peak_memory_bytes"]
            rows.append(_row(f"{p}: peak-memory cut", f"{peak_cut:.0%}", "", "–", "info"))
        cost, cost_min = _ratios(r, base)
        limit = TARGETS["checkpoint_time"].value
        rows.append(
            _row(f"{p}: time with / without", _fmt(cost), _fmt(cost_min), f"<= {limit:g}", _verdict(cost, limit, False))
        )
    return rows


def layout_rows(records: list[Record]) -> list[list[str]]:
    """channels_last / contiguous time (alternating pair) and the output difference between them."""
    rows: list[list[str]] = []
    for r in _ok(records):
        if r["kind"] == "igf" and r["channels_last"]:
            base = _twin(records, r, channels_last=False)
            ratio, ratio_min = _ratios(r, base)
            diff = None if base is None else _PAIRED.get((r["name"], base["name"]), {}).get("max_abs_output_diff")
            what = f"IGF {r['pass']} at {r['placement']}: channels_last time / contiguous time"
            rows.append(_row(what, _fmt(ratio), _fmt(ratio_min), "–", "info"))
            if diff is not None:
                rows.append(
                    _row(
                        f"IGF {r['pass']} at {r['placement']}: max abs output difference, channels_last vs contiguous",
                        _fmt(diff, ".1e"),
                        "",
                        f"<= {TARGETS['output_difference'].value:g}",
                        _verdict(diff, TARGETS["output_difference"].value, False),
                    )
                )
    return rows


# --------------------------------------------------------------------------- targets


def target_rows(records: list[Record]) -> list[list[str]]:
    """One row per target measurement: what, value (medians), value (fastest blocks), target, verdict."""
    rows: list[list[str]] = []
    placements = list(dict.fromkeys(r["placement"] for r in _ok(records) if r["kind"] == "gate"))
    for p in placements:
        a = _find(records, kind="gate", placement=p, gate="asgate", **{"pass": "fwdbwd"})
        for other in ("convlstm", "convgru"):
            target = TARGETS[f"{other}_over_asgate"].value
            o = _find(records, kind="gate", placement=p, gate=other, **{"pass": "fwdbwd"})
            ratio, ratio_min = _ratios(o, a)
            flop_ratio = None if a is None or o is None or not a.get("flops") else o["flops"] / a["flops"]
            rows.append(
                [
                    f"gate step fwd+bwd at {p}: {other} time / ASGate time (conv FLOP ratio {_fmt(flop_ratio)})",
                    _fmt(ratio),
                    _fmt(ratio_min),
                    f">= {target}",
                    _verdict(ratio, target, True),
                ]
            )
    for r in _ok(records):
        if r["kind"] != "igf" or "floor_ratio" not in r:
            continue
        if r["guidance"] == "tiled" or not all(r.get(k) == v for k, v in IGF_BASE.items() if k != "compiled"):
            continue
        target = TARGETS["compiled_floor" if r["compiled"] else "eager_floor"].value
        mode = "compiled" if r["compiled"] else "eager"
        floor_min = r["time_s"]["min"] / r["floor_time_s"]["min"]
        rows.append(
            [
                f"IGF {mode} {r['pass']} at {r['placement']} ({r['guidance']}): time / conv floor",
                _fmt(r["floor_ratio"]),
                _fmt(floor_min),
                f"<= {target}",
                _verdict(r["floor_ratio"], target, False),
            ]
        )
        if "op_replay_ratio" in r and not r["compiled"]:
            replay_min = r["op_replay_time_s"]["min"] / r["floor_time_s"]["min"]
            rows.append(
                [
                    f"IGF eager {r['pass']} at {r['placement']}: all-op replay / conv floor (its kernels alone)",
                    _fmt(r["op_replay_ratio"]),
                    _fmt(replay_min),
                    "–",
                    "info",
                ]
            )
    rows += checkpoint_rows(records) + fused_rows(records) + layout_rows(records)
    for r in _ok(records):
        if r.get("guidance") != "tiled":
            continue
        keys = (*IGF_KEYS[:-1], "checkpoint", "fused")
        vec = _find(records, **{k: r[k] for k in keys if k in r}, guidance="vector")
        if vec is None:
            continue
        ratio, ratio_min = _ratios(r, vec)
        rows.append(
            [
                f"{r['kind']} {r['pass']} at {r['placement']}: tiled-map time / vector time",
                _fmt(ratio),
                _fmt(ratio_min),
                f">= {TARGETS['tiled_over_vector'].value:g}",
                _verdict(ratio, TARGETS["tiled_over_vector"].value, True),
            ]
        )
    return rows


# --------------------------------------------------------------------------- peers and ranks

PEER_HEADER = [
    "site",
    "layer",
    "guidance",
    "pass",
    "median ms",
    "time / IGF (medians)",
    "time / IGF (fastest blocks)",
    "time / conv floor",
    "saved maps",
    "saved / IGF's",
    "parameters",
    "GFLOP",
]


def peer_rows(records: list[Record]) -> list[list[str]]:
    """IGF and its peers at each placement and pass: time (and time / IGF's, from the alternating pair),
    time / conv floor, saved activations (in IGF's (B, C'_v, H, W) maps), parameters, FLOPs."""
    rows: list[list[str]] = []
    for r in _ok(records):
        if r["kind"] != "peer":
            continue
        base = _find(records, kind="peer", placement=r["placement"], layer="igf", precision=r["precision"],
                     **{"pass": r["pass"]})  # fmt: skip
        ratio, ratio_min = (1.0, 1.0) if r["layer"] == "igf" else _ratios(r, base)
        saved, base_saved = r.get("saved_bytes"), None if base is None else base.get("saved_bytes")
        flops = r.get("flops")
        rows.append(
            [
                r["placement"],
                r["layer"],
                r["guidance"],
                r["pass"],
                _fmt(r["time_s"]["median"] * 1e3),
                _fmt(ratio),
                _fmt(ratio_min),
                _fmt(r.get("floor_ratio")),
                _fmt(r.get("saved_maps"), ".1f"),
                _fmt(saved / base_saved if saved is not None and base_saved else None),
                f"{r['parameters']:,}",
                _fmt(flops / 1e9 if flops else None, ".3f"),
            ]
        )
    return rows


RANK_HEADER = [
    "rank",
    "guided",
    "kernel",
    "pass",
    "median ms",
    "time / conv floor (medians)",
    "time / conv floor (fastest blocks)",
    "saved maps",
    "parameters",
    "GFLOP",
]


def rank_rows(records: list[Record]) -> list[list[str]]:
    """IGF on a sequence, an image and a clip: time, time / conv floor, saved activations, parameters, FLOPs."""
    rows: list[list[str]] = []
    for r in _ok(records):
        if r["kind"] != "rank":
            continue
        floor_min = r["time_s"]["min"] / r["floor_time_s"]["min"] if "floor_time_s" in r else None
        flops = r.get("flops")
        rows.append(
            [
                f"{r['spatial_dims']}-D",
                str(tuple(r["shapes"]["guided"])),
                str(tuple(r["kernel"])),
                r["pass"],
                _fmt(r["time_s"]["median"] * 1e3),
                _fmt(r.get("floor_ratio")),
                _fmt(floor_min),
                _fmt(r.get("saved_maps"), ".1f"),
                f"{r['parameters']:,}",
                _fmt(flops / 1e9 if flops else None, ".3f"),
            ]
        )
    return rows


TABLE_ROW_HEADER = [
    "row",
    "model",
    "changes",
    "parameters",
    "median ms",
    "IQR ms",
    "time / full model's (medians)",
    "time / full model's (fastest blocks)",
    "GFLOP",
    "peak MiB",
    "samples/s",
]


def table_row_rows(records: list[Record], table: str | int) -> list[list[str]]:
    """The DCMFNet steps of an ablation table's models: time per step and, from the alternating pair, time / the full
    model's at the same config, pass, precision, batch and image size; parameters, FLOPs, peak memory, samples/s."""
    rows: list[list[str]] = []
    for r in _ok(records):
        if r["kind"] != "dcmfnet" or r.get("table") != table:
            continue
        settings = ("config", "pass", "precision", "batch", "image_size", "compiled", "channels_last")
        base = _find(records, kind="dcmfnet", table=table, full_model=True, **{k: r[k] for k in settings})
        ratio, ratio_min = (1.0, 1.0) if r["full_model"] else _ratios(r, base)
        flops, mem = r.get("flops"), r.get("peak_memory_bytes")
        rows.append(
            [
                r["row_label"],
                f"`{r['row']}`",
                r["row_changes"],
                f"{r['parameters']:,}",
                _fmt(r["time_s"]["median"] * 1e3),
                _fmt(r["time_s"]["iqr"] * 1e3),
                _fmt(ratio),
                _fmt(ratio_min),
                _fmt(flops / 1e9 if flops else None),
                _fmt(mem / MIB if mem is not None else None, ".1f"),
                _fmt(r.get("items_per_s"), ".1f"),
            ]
        )
    return rows


# --------------------------------------------------------------------------- tables


def _table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def _shape(r: Record) -> str:
    return "; ".join(f"{k} {tuple(v)}" for k, v in r.get("shapes", {}).items())


def _case_row(r: Record) -> list[str]:
    t = r["time_s"]
    flops = r.get("flops")
    mem = r.get("peak_memory_bytes")
    return [
        f"`{r['name']}`",
        _shape(r),
        _fmt(t["median"] * 1e3),
        _fmt(t["iqr"] * 1e3),
        _fmt(flops / 1e9 if flops else None),
        _fmt(r["achieved_flops_per_s"] / 1e9 if flops else None, ".1f"),
        _fmt(r.get("floor_ratio")),
        _fmt(r.get("op_replay_ratio")),
        _page_faults(r),
        _fmt(mem / MIB if mem is not None else None, ".1f"),
        _fmt(r.get("saved_maps"), ".1f"),
        _fmt(r.get("items_per_s"), ".1f"),
        _fmt(r.get("compile_seconds"), ".1f"),
    ]


def _page_faults(r: Record) -> str:
    """``case (floor)`` minor page faults per call, where counted."""
    case, floor = r.get("page_faults_per_call"), r.get("floor_page_faults_per_call")
    if case is None or floor is None:
        return "–"
    return f"{case:.0f} ({floor:.0f})"


CASE_HEADER = [
    "case",
    "input shapes",
    "median ms",
    "IQR ms",
    "GFLOP",
    "GFLOP/s",
    "time / conv floor",
    "all-op replay / conv floor",
    "page faults / call (floor)",
    "peak MiB",
    "saved maps",
    "samples/s",
    "compile s",
]

GROUP_TITLES = {
    "gate": "Gate step (ASGate vs ConvGRU vs ConvLSTM)",
    "fusion": "Fusion unit",
    "igf": "Full IGF (ASGate, L = 5) at each placement",
    "depth": "IGF depth L = 1..7 per gate",
    "compile": "Eager vs torch.compile",
    "layout": "Contiguous vs channels_last",
    "precision": "fp32 vs autocast",
    "checkpoint": "Activation checkpointing",
    "fused": "Fused step vs the step as separate operations (fused=False)",
    "dcmfnet": "DCMFNet end to end",
    "peers": "IGF and its peers (FiLM, PWAM, concatenation), every case",
    "ranks": "IGF in 1-D, 2-D and 3-D, every case",
    "tablep": "DCMFNet's Table P models, every case",
}


def markdown(
    env: dict[str, Any], records: list[Record], plots: list[str], comparisons: list[Record] | None = None
) -> str:
    _PAIRED.clear()
    _PAIRED.update({(c["numerator"], c["denominator"]): c for c in comparisons or []})
    lines = [f"# igf benchmarks ({env['device']}: {env['device_name']})", ""]
    lines += [f"Command: `{env.get('command', '')}`", ""]
    env_rows = [[f"`{k}`", str(v)] for k, v in env.items() if k != "command"]
    lines += [_table(["environment", "value"], env_rows), ""]
    lines += [
        "Method: `torch.utils.benchmark.Timer.blocked_autorange` after warm-up calls; the median and the "
        "interquartile range (IQR) are over timed blocks (per-call time). Forward runs under `no_grad`; "
        "forward+backward (`fwdbwd`) back-propagates a fixed random output gradient into parameters and inputs. "
        "Compile time is the first compiled call and is never inside the timing. FLOPs from "
        "`torch.utils.flop_counter.FlopCounterMode` (convolutions and matmuls only; elementwise ops count zero). "
        "*Time / conv floor*: the case's time divided by the time of the same convolution/matmul aten calls "
        "(recorded from one real call, same shapes, strides and dtypes) replayed back to back. "
        "*All-op replay / conv floor*: every aten operator of the call (elementwise, reductions, copies, "
        "allocations, views and the convolutions) replayed back to back the same way, over the conv floor: "
        "what eager PyTorch running these operators cannot go below, without the Python and autograd around "
        "them (IGF cases; denormals flushed to zero during replays). "
        "*Page faults / call*: minor page faults of the process per call of the case and of its floor "
        "(`getrusage`), i.e. first touches of memory the allocator has just taken from the system: "
        "time the case spends in the allocator and the kernel, not in its arithmetic. "
        f"Peak memory: {env.get('memory_method', '')}, above the memory live before the call "
        "(parameters and inputs excluded). Shapes: see `benchmarks/cases.py` for how they derive from the paper.",
        "",
    ]
    errors = [r for r in records if "error" in r]
    trows = target_rows(records)
    lines += [
        "## Targets, as measured",
        "",
        "Time ratios of two cases come from re-timing the pair in alternating blocks (A B A B ..., at least "
        "15 rounds) after the main run, so a change of machine load between the two does not bias them; the "
        "floor ratio alternates the case with its conv-floor replay in the same way. *Fastest blocks* divides"
        " the two minima: on a shared machine it is the estimate least disturbed by other processes. *Saved "
        "activations* (docs/guides/reproducing.rst): bytes of the unique storages autograd keeps for backward in "
        "one training forward (`torch.autograd.graph.saved_tensors_hooks`, parameters excluded), in maps of one "
        "(B, C'_v, H, W) float32 tensor; deterministic. *fused* is the default IGF path, *plain* is `fused=False` "
        "(the step written as separate PyTorch operations, autograd saving every intermediate). Every target, "
        "its reason and its source: `benchmarks/targets.py`.",
        "",
    ]
    lines += [
        _table(["measurement", "value (medians)", "value (fastest blocks)", "target", "verdict (medians)"], trows)
        if trows
        else "(no target cases run)",
        "",
    ]
    prows, rrows = peer_rows(records), rank_rows(records)
    if prows:
        lines += [
            "## IGF and its peers at the DCMFNet placements",
            "",
            "Each layer built by `igf.build_fusion_layer` with the placement's input and output widths: IGF with "
            "L = 5 and ASGate, PWAM with key width = IGF's C'_v, concatenation with hidden width = IGF's C'_v, FiLM "
            "(no hidden width). Guidance at E3, E4 and E_enc: a sentence of 15 word features (B, 15, C_x) with a "
            "padding mask (15, 9, 3, ... real words); PWAM attends over the real words, the others take their "
            "masked mean (with a single sentence vector PWAM's output would not depend on the guidance). At E_dec: "
            "the placement's guidance map. *Time / IGF*: the pair re-timed in alternating blocks. *Saved maps*: in "
            "units of IGF's (B, C'_v, H, W) float32 map at the placement, so the column compares across layers.",
            "",
            _table(PEER_HEADER, prows),
            "",
        ]
    if rrows:
        lines += [
            "## IGF in 1-D, 2-D and 3-D",
            "",
            "IGF (L = 5, ASGate) guided by a sentence vector, at the widths of the variant placement, on a "
            "sequence (B, C_y, T), an image (B, C_y, H, W) and a short clip (B, C_y, D, H, W) of about the same "
            "number of positions; `kernel` is the gates' and the output convolution's kernel. *Saved maps*: in "
            "(B, C'_v, *spatial) float32 maps of the case's own size.",
            "",
            _table(RANK_HEADER, rrows),
            "",
        ]
    for table in dict.fromkeys(r["table"] for r in _ok(records) if r["kind"] == "dcmfnet" and "table" in r):
        first = next(r for r in _ok(records) if r.get("table") == table)
        lines += [
            f"## Table {table} rows: training step",
            "",
            f"DCMFNet's training step (forward, BCE loss, backward, Adam step; {first['precision']}) for each model "
            f"of its ablation Table {table} (`dcmfnet.ablations.tables`): the run config `{first['config']}`'s "
            "model with the row's switches, as `dcmfnet ablate` trains it, at batch "
            f"{first['batch']}, {first['image_size']} x {first['image_size']} images and "
            f"{first['text_length']} tokens per expression. *Time / full model's*: the pair re-timed in "
            "alternating blocks (A B A B ...), so it holds on a machine whose load changes, unlike times per step "
            "from training runs on different machines. Saved activations per step are not measured here; the "
            "ablation records have them (`dcmfnet.ablations.cost`, deterministic).",
            "",
            _table(TABLE_ROW_HEADER, table_row_rows(records, table)),
            "",
        ]
    ok = _ok(records)
    for group, title in GROUP_TITLES.items():
        rs = [r for r in ok if group in r.get("groups", [])]
        if not rs:
            continue
        lines += [f"## {title}", "", _table(CASE_HEADER, [_case_row(r) for r in rs]), ""]
    if errors:
        lines += ["## Errors", ""] + [f"- `{r['name']}`: {r['error']}" for r in errors] + [""]
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots


def _plot_depth(records: list[Record], path: Path) -> bool:
    import matplotlib.pyplot as plt

    rs = [r for r in _ok(records) if "depth" in r.get("groups", [])]
    if not rs:
        return False
    passes = list(dict.fromkeys(r["pass"] for r in rs))
    fig, axes = plt.subplots(1, len(passes), figsize=(5 * len(passes), 4), squeeze=False)
    for ax, pass_ in zip(axes[0], passes, strict=True):
        for gate in dict.fromkeys(r["gate"] for r in rs):
            pts = sorted(
                (r["layers"], r["time_s"]["median"] * 1e3, r["time_s"]["iqr"] * 1e3)
                for r in rs
                if r["pass"] == pass_ and r["gate"] == gate
            )
            if pts:
                ax.errorbar(
                    [p[0] for p in pts],
                    [p[1] for p in pts],
                    yerr=[p[2] / 2 for p in pts],
                    marker="o",
                    capsize=3,
                    label=gate,
                )
        ax.set_xlabel("IGF layers L")
        ax.set_ylabel("median time (ms), bar = IQR")
        ax.set_title(f"IGF at {rs[0]['placement']}, {pass_}")
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _plot_pairs(
    records: list[Record],
    path: Path,
    group: str,
    flag: str,
    labels: tuple[str, str],
    value: Callable[[Record], float | None],
    ylabel: str,
    title: str,
    key: Callable[[Record], str],
) -> bool:
    import matplotlib.pyplot as plt

    rs = [r for r in _ok(records) if group in r.get("groups", [])]
    pairs: dict[str, list[float | None]] = {}
    for r in rs:
        pairs.setdefault(key(r), [None, None])[1 if r.get(flag) else 0] = value(r)
    pairs = {k: v for k, v in pairs.items() if None not in v}
    if not pairs:
        return False
    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(pairs) + 2), 4))
    xs = range(len(pairs))
    width = 0.38
    for i, label in enumerate(labels):
        ax.bar([x + (i - 0.5) * width for x in xs], [v[i] for v in pairs.values()], width, label=label)  # type: ignore[arg-type]
    ax.set_xticks(list(xs), list(pairs), rotation=20, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_plots(records: list[Record], out_dir: Path) -> list[str]:
    """Write the PNG plots that the records allow; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    written = []
    if _plot_depth(records, out_dir / "time_vs_layers.png"):
        written.append("time_vs_layers.png")
    if _plot_pairs(
        records,
        out_dir / "eager_vs_compile.png",
        "compile",
        "compiled",
        ("eager", "torch.compile"),
        lambda r: r["time_s"]["median"] * 1e3,
        "median time (ms)",
        "IGF eager vs torch.compile",
        lambda r: f"{r['placement']} {r['pass']}",
    ):
        written.append("eager_vs_compile.png")
    if _plot_pairs(
        records,
        out_dir / "checkpoint_memory.png",
        "checkpoint",
        "checkpoint",
        ("no checkpointing", "checkpointing"),
        lambda r: r.get("peak_memory_bytes", math.nan) / MIB,
        "peak memory of fwd+bwd (MiB)",
        "IGF training peak memory",
        lambda r: f"{r['placement']} L={r['layers']}",
    ):
        written.append("checkpoint_memory.png")
    if _plot_pairs(
        records,
        out_dir / "checkpoint_time.png",
        "checkpoint",
        "checkpoint",
        ("no checkpointing", "checkpointing"),
        lambda r: r["time_s"]["median"] * 1e3,
        "median fwd+bwd time (ms)",
        "IGF training time",
        lambda r: f"{r['placement']} L={r['layers']}",
    ):
        written.append("checkpoint_time.png")
    return written


def write_report(
    env: dict[str, Any],
    records: list[Record],
    out_dir: Path,
    *,
    plots: bool = True,
    comparisons: list[Record] | None = None,
    name: str = "results.md",
) -> None:
    """Write the report ``name`` (default ``results.md``) and the PNG plots into ``out_dir``."""
    names = write_plots(records, out_dir) if plots else []
    (out_dir / name).write_text(markdown(env, records, names, comparisons))
