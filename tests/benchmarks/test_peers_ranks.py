"""The ``peers`` and ``ranks`` benchmark groups build and run (structure only, no timing)."""

from __future__ import annotations

import dataclasses

import torch

from benchmarks.cases import PEER_LAYERS, PeerCase, RankCase, sentence_mask
from benchmarks.report import peer_rows, rank_rows
from benchmarks.suite import build_suite, comparison_pairs

CPU = torch.device("cpu")


def test_peer_and_rank_cases_build_and_save_activations() -> None:
    cases = [c for c, _ in build_suite(CPU, True, ("peers", "ranks"))]
    peers = [c for c in cases if isinstance(c, PeerCase)]
    ranks = [c for c in cases if isinstance(c, RankCase)]
    assert {c.layer for c in peers} == set(PEER_LAYERS)
    assert {c.guidance for c in peers} == {"tokens", "map"}
    assert {c.spatial_dims for c in ranks} == {1, 2, 3}
    assert {c.kernel for c in ranks if c.spatial_dims == 3} == {(1, 3, 3), (3, 3, 3)}
    for case in cases:
        work = case.build(CPU)
        work.step()  # forward + backward
        assert work.forward is not None and work.saved_bytes and work.map_bytes and work.parameters > 0
        out = work.forward()
        assert out.shape[0] == case.placement.batch and torch.isfinite(out).all()
        if isinstance(case, RankCase):
            assert tuple(out.shape[2:]) == case.size


def test_each_peer_is_paired_with_igf_at_its_placement_and_pass() -> None:
    cases = [c for c, _ in build_suite(CPU, True, ("peers",))]
    pairs = comparison_pairs(cases)
    assert len(pairs) == 3 * len({(c.placement, c.pass_) for c in cases})
    for peer, igf in pairs:
        assert igf == dataclasses.replace(peer, layer="igf") and peer.layer != "igf"


def test_sentence_mask_pads_each_sample_differently_and_keeps_a_word() -> None:
    mask = sentence_mask(6)
    assert mask.shape == (6, 15) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [15, 9, 3, 12, 6, 15]


def test_report_rows_for_peers_and_ranks() -> None:
    timing = {"median": 0.01, "min": 0.009}
    base = {"time_s": timing, "floor_time_s": timing, "floor_ratio": 1.2, "parameters": 10, "flops": 2e9}
    records = [
        {**base, "name": "a", "kind": "peer", "placement": "E3", "layer": "igf", "pass": "fwd", "precision": "fp32",
         "guidance": "tokens", "saved_bytes": 100},
        {**base, "name": "b", "kind": "peer", "placement": "E3", "layer": "film", "pass": "fwd", "precision": "fp32",
         "guidance": "tokens", "saved_bytes": 50},
        {**base, "name": "c", "kind": "rank", "spatial_dims": 3, "kernel": [1, 3, 3], "pass": "fwd",
         "shapes": {"guided": [2, 8, 4, 8, 8]}},
    ]  # fmt: skip
    rows = peer_rows(records)
    assert [row[1] for row in rows] == ["igf", "film"] and rows[1][5] == "1.00" and rows[1][9] == "0.50"
    (rank,) = rank_rows(records)
    assert rank[:3] == ["3-D", "(2, 8, 4, 8, 8)", "(1, 3, 3)"]
