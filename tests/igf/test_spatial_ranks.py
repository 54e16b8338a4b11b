"""IGF, its fusion unit and its gates in 1-D ``(B, C, T)`` and 3-D ``(B, C, D, H, W)``.

The plain reference of Eq. 1-4 (tests/igf/reference.py) reads the rank from its tensors; every
module is compared against it in float64, the fused paths against the plain ones, and a 3-D IGF
with ``(1, k, k)`` kernels on a one-frame volume against the 2-D IGF with the same weights.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch.testing import assert_close

from igf import ASGate, BilinearFusionUnit, ConvGRUGate, ConvLSTMGate, IterativeGatedFusion
from igf.saved_activations import saved_bytes
from tests.igf import reference

F64 = {"dtype": torch.float64}
# guided map sizes per rank (3-D sizes differ per dimension to catch a transposed axis)
SIZES = {1: (7,), 2: (5, 4), 3: (3, 4, 5)}
# guidance map sizes per rank: coarser, finer, and mixed
GUIDANCE_SIZES = {1: [(3,), (9,)], 2: [(3, 2)], 3: [(2, 2, 3), (3, 6, 2)]}


def _igf(rank: int, *, gate: str = "asgate", **kwargs: object) -> IterativeGatedFusion:
    torch.manual_seed(0)
    options: dict[str, object] = {"num_layers": 3, "heads": 2, "gate": gate, "spatial_dims": rank, **F64}
    return IterativeGatedFusion(6, 4, **{**options, **kwargs})  # type: ignore[arg-type]


def _guided(rank: int, batch: int = 2, **kwargs: object) -> torch.Tensor:
    return torch.randn(batch, 4, *SIZES[rank], **{**F64, **kwargs})  # type: ignore[arg-type]


def _expected(module: IterativeGatedFusion, guidance: torch.Tensor, guided: torch.Tensor, gate: str, mode: str):
    return reference.iterative_gated_fusion(
        module.state_dict(), guidance, guided, num_layers=3, heads=2, gate=gate, output_mode=mode
    )


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("gate", ["asgate", "convgru", "convlstm"])
@pytest.mark.parametrize("fused", [True, False])
def test_igf_matches_reference_with_vector_guidance(rank: int, gate: str, fused: bool) -> None:
    module = _igf(rank, gate=gate, fused=fused)
    guidance, guided = torch.randn(2, 6, **F64), _guided(rank)
    output, fusions, gates = _expected(module, guidance, guided, gate, "all_fusions")
    got = module(guidance, guided, return_intermediates=True)
    assert got.output.shape == (2, 4, *SIZES[rank])
    assert_close(got.output, output, rtol=1e-10, atol=1e-10)
    for mine, theirs in zip(got.fusions + got.gates, fusions + gates, strict=True):
        assert_close(mine, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("mode", ["last_gate", "fusions_and_last_gate", "last_fusion"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_igf_matches_reference_with_map_guidance(rank: int, mode: str, checkpoint: bool) -> None:
    options = {"guidance_1d": "map"} if rank == 1 else {}
    module = _igf(rank, output_mode=mode, checkpoint=checkpoint, kernel_size=(3,) * (rank - 1) + (5,), **options)
    guided = _guided(rank)
    for size in GUIDANCE_SIZES[rank]:
        guidance = torch.randn(2, 6, *size, **F64)
        assert_close(module(guidance, guided), _expected(module, guidance, guided, "asgate", mode)[0])


@pytest.mark.parametrize("rank", [1, 3])
def test_token_guidance_is_the_masked_mean_in_every_rank(rank: int) -> None:
    module = _igf(rank)
    tokens, guided = torch.randn(2, 5, 6, **F64), _guided(rank)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    expected = _expected(module, reference.masked_mean_tokens(tokens, mask), guided, "asgate", "all_fusions")[0]
    assert_close(module(tokens, guided, guidance_mask=mask), expected)


@pytest.mark.parametrize("rank", [1, 3])
def test_fusion_unit_and_gates_match_reference(rank: int) -> None:
    torch.manual_seed(0)
    fused, hidden = _guided(rank), _guided(rank)
    unit = BilinearFusionUnit(6, 4, heads=3, spatial_dims=rank, **F64)
    guidance = torch.randn(2, 6, *SIZES[rank], **F64)
    state = {f"u.{key}": value for key, value in unit.state_dict().items()}
    assert_close(unit(guidance, hidden), reference.fusion_unit(state, "u", guidance, hidden, 3))
    vector = torch.randn(2, 6, **F64)
    tiled = vector.view(2, 6, *(1,) * rank).expand(-1, -1, *SIZES[rank])
    assert_close(unit(vector, hidden), reference.fusion_unit(state, "u", tiled, hidden, 3))
    cell = torch.randn_like(hidden)
    for kind, gate_class in (("asgate", ASGate), ("convgru", ConvGRUGate), ("convlstm", ConvLSTMGate)):
        gate = gate_class(4, kernel_size=3, spatial_dims=rank, **F64)
        state = {f"g.{key}": value for key, value in gate.state_dict().items()}
        expected = reference.gate_step(kind, state, "g", fused, hidden, cell)
        got = gate(fused, hidden, cell if kind == "convlstm" else None)
        assert_close(got[0], expected[0])
        if kind == "convlstm":
            assert_close(got[1], expected[1])


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("guidance_kind", ["vector", "map"])
def test_fused_gradients_equal_plain_gradients(rank: int, checkpoint: bool, guidance_kind: str) -> None:
    options = {"guidance_1d": "map"} if rank == 1 else {}
    plain = _igf(rank, fused=False, **options)
    lean = _igf(rank, fused=True, checkpoint=checkpoint, **options)
    guidance_shape = (2, 6) if guidance_kind == "vector" else (2, 6, *GUIDANCE_SIZES[rank][0])
    results = []
    for module in (plain, lean):
        guidance = torch.randn(guidance_shape, generator=torch.Generator().manual_seed(1), **F64).requires_grad_()
        guided = _guided(rank, generator=torch.Generator().manual_seed(2)).requires_grad_()
        module(guidance, guided).square().sum().backward()
        results.append([guidance.grad, guided.grad, *(p.grad for p in module.parameters())])
    for got, want in zip(results[1], results[0], strict=True):
        assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_gradcheck_float64(rank: int, checkpoint: bool) -> None:
    module = IterativeGatedFusion(
        3,
        2,
        num_layers=2,
        heads=2,
        spatial_dims=rank,
        checkpoint=checkpoint,
        output_mode="fusions_and_last_gate",
        **F64,
    )
    sizes = {1: (4,), 3: (2, 3, 2)}[rank]
    guidance = torch.randn(1, 3, requires_grad=True, **F64)
    guided = torch.randn(1, 2, *sizes, requires_grad=True, **F64)
    assert torch.autograd.gradcheck(lambda x, y: module(x, y), (guidance, guided))
    guidance_map = torch.randn(1, 3, *(max(1, s - 1) for s in sizes), requires_grad=True, **F64)
    options = {"guidance_1d": "map"} if rank == 1 else {}
    module_map = IterativeGatedFusion(3, 2, num_layers=2, heads=2, spatial_dims=rank, **options, **F64)  # type: ignore[arg-type]
    assert torch.autograd.gradcheck(lambda x, y: module_map(x, y), (guidance_map, guided))


@pytest.mark.parametrize("gate", ["asgate", "convgru", "convlstm"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_3d_igf_with_1kk_kernels_on_one_frame_equals_the_2d_igf(gate: str, checkpoint: bool) -> None:
    torch.manual_seed(0)
    flat = IterativeGatedFusion(6, 4, num_layers=3, heads=2, gate=gate, kernel_size=3, checkpoint=checkpoint, **F64)
    volume = IterativeGatedFusion(
        6, 4, num_layers=3, heads=2, gate=gate, kernel_size=(1, 3, 3), spatial_dims=3, checkpoint=checkpoint, **F64
    )
    assert flat.state_dict().keys() == volume.state_dict().keys()
    volume.load_state_dict({key: value.unsqueeze(2) if value.dim() == 4 else value
                            for key, value in flat.state_dict().items()})  # fmt: skip
    guided = torch.randn(2, 4, 5, 6, **F64, requires_grad=True)
    for guidance in (torch.randn(2, 6, **F64), torch.randn(2, 6, 3, 3, **F64)):
        guidance_3d = guidance if guidance.dim() == 2 else guidance.unsqueeze(2)
        expected = flat(guidance, guided)
        got = volume(guidance_3d, guided.unsqueeze(2))
        assert got.shape == (2, 4, 1, 5, 6)
        assert_close(got.squeeze(2), expected, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad(expected.sum(), [guided, *flat.parameters()])
        grads_3d = torch.autograd.grad(got.sum(), [guided, *volume.parameters()])
        for want, have in zip(grads, grads_3d, strict=True):
            assert_close(have.reshape(want.shape), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("gate", ["asgate", "convlstm"])
def test_compile_fullgraph_matches_eager(rank: int, gate: str) -> None:
    torch._dynamo.reset()
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, gate=gate, spatial_dims=rank).eval()
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    guidance, guided = torch.randn(2, 6), torch.randn(2, 4, *SIZES[rank])
    assert_close(compiled(guidance, guided), module(guidance, guided))


@pytest.mark.parametrize("rank", [1, 3])
def test_compile_fullgraph_training_step_matches_eager(rank: int) -> None:
    torch._dynamo.reset()
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, spatial_dims=rank, checkpoint=True)
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    guidance, guided = torch.randn(2, 6), torch.randn(2, 4, *SIZES[rank])
    compiled(guidance, guided).sum().backward()
    expected = [p.grad.clone() for p in module.parameters()]  # type: ignore[union-attr]
    module.zero_grad()
    module(guidance, guided).sum().backward()
    for got, want in zip(expected, (p.grad for p in module.parameters()), strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("rank", [1, 3])
def test_export_with_a_dynamic_batch(rank: int) -> None:
    options = {"guidance_1d": "map"} if rank == 1 else {}
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, spatial_dims=rank, **options).eval()  # type: ignore[arg-type]
    guidance_size = GUIDANCE_SIZES[rank][0]
    guidance, guided = torch.randn(3, 6, *guidance_size), torch.randn(3, 4, *SIZES[rank])
    batch = torch.export.Dim("batch", min=2)
    program = torch.export.export(module, (guidance, guided), dynamic_shapes=({0: batch}, {0: batch}))
    other = torch.randn(5, 6, *guidance_size), torch.randn(5, 4, *SIZES[rank])
    assert_close(program.module()(*other), module(*other))


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("fused", [True, False])
def test_bf16_autocast_gives_bf16_close_to_float32(rank: int, fused: bool) -> None:
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, spatial_dims=rank, fused=fused)
    guidance, guided = torch.randn(2, 6), torch.randn(2, 4, *SIZES[rank], requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = module(guidance, guided)
    assert output.dtype == torch.bfloat16
    output.float().sum().backward()
    assert guided.grad is not None and guided.grad.dtype == torch.float32
    assert_close(output.float(), module(guidance, guided), rtol=0.05, atol=0.05)


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_empty_batch(rank: int, checkpoint: bool) -> None:
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, spatial_dims=rank, checkpoint=checkpoint)
    guided = torch.randn(0, 4, *SIZES[rank], requires_grad=True)
    options = {"guidance_mask": torch.ones(0, 5, dtype=torch.bool)}
    for guidance, kwargs in ((torch.randn(0, 6), {}), (torch.randn(0, 5, 6), options)):
        output = module(guidance, guided, **kwargs)
        assert output.shape == (0, 4, *SIZES[rank])
        output.sum().backward()
        assert guided.grad is not None and guided.grad.shape == guided.shape


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_saved_activations_per_map_are_the_same_in_every_rank(fused: bool, checkpoint: bool) -> None:
    """With as many positions per map, each rank saves as many maps: the 2-D savings carry over."""
    shapes = {1: (24,), 2: (4, 6), 3: (2, 3, 4)}
    maps = {}
    for rank, size in shapes.items():
        torch.manual_seed(0)
        module = IterativeGatedFusion(8, 6, hidden_channels=4, spatial_dims=rank, fused=fused, checkpoint=checkpoint)
        guidance, guided = torch.randn(2, 8, requires_grad=True), torch.randn(2, 6, *size, requires_grad=True)
        maps[rank] = saved_bytes(module, lambda: module(guidance, guided)) / (2 * 4 * 24 * 4)  # noqa: B023
    assert maps[1] == pytest.approx(maps[2]) and maps[3] == pytest.approx(maps[2])


def test_a_2d_state_dict_loads_unchanged() -> None:
    torch.manual_seed(0)
    default = IterativeGatedFusion(6, 4, num_layers=2, gate="convlstm")
    explicit = IterativeGatedFusion(6, 4, num_layers=2, gate="convlstm", spatial_dims=2, kernel_size=(3, 3))
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in explicit.state_dict().items()
    }
    explicit.load_state_dict(default.state_dict())


RANK_ERRORS: list[tuple[int, tuple[int, ...], tuple[int, ...], str]] = [
    (3, (2, 6), (2, 4, 5, 5), "guided must have shape (B, C_y, D, H, W) (5 dims) for spatial_dims=3, got 4 dims"),
    (1, (2, 6), (2, 4, 5, 5), "guided must have shape (B, C_y, T) (3 dims) for spatial_dims=1, got 4 dims"),
    (
        3,
        (2, 6, 3, 3),
        (2, 4, 3, 5, 5),
        "guidance must have shape (B, C_x), (B, T, C_x) or (B, C_x, d, h, w) (2 or 3 or 5 dims) for spatial_dims=3",
    ),
    (1, (2, 6, 3, 3), (2, 4, 5), "guidance must have shape (B, C_x) or (B, T, C_x) (2 or 3 dims) for spatial_dims=1"),
    (3, (2, 6), (2, 4, 0, 5, 5), "guided must not have a zero-size dimension, got shape (2, 4, 0, 5, 5)"),
    (1, (2, 6), (2, 4, 0), "guided must not have a zero-size dimension"),
]


@pytest.mark.parametrize(("rank", "guidance_shape", "guided_shape", "message"), RANK_ERRORS)
def test_errors_name_the_expected_rank(
    rank: int, guidance_shape: tuple[int, ...], guided_shape: tuple[int, ...], message: str
) -> None:
    module = IterativeGatedFusion(6, 4, num_layers=1, spatial_dims=rank)
    with pytest.raises(ValueError, match=re.escape(message)):
        module(torch.randn(guidance_shape), torch.randn(guided_shape))


def test_constructor_and_module_errors_name_the_rank() -> None:
    with pytest.raises(ValueError, match=re.escape("spatial_dims must be one of [1, 2, 3], got 4")):
        IterativeGatedFusion(6, 4, spatial_dims=4)
    with pytest.raises(ValueError, match=re.escape("3 of them for spatial_dims=3, got (1, 3)")):
        IterativeGatedFusion(6, 4, spatial_dims=3, kernel_size=(1, 3))
    with pytest.raises(ValueError, match=re.escape("kernel_size must be odd")):
        ASGate(4, spatial_dims=3, kernel_size=(1, 2, 3))
    with pytest.raises(ValueError, match=re.escape("guidance_1d='map' is for spatial_dims=1")):
        IterativeGatedFusion(6, 4, guidance_1d="map")
    with pytest.raises(ValueError, match=re.escape("fusion must have shape (B, C, T) (3 dims) for spatial_dims=1")):
        ConvGRUGate(4, spatial_dims=1)(torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5))
    unit = BilinearFusionUnit(6, 4, spatial_dims=3)
    with pytest.raises(ValueError, match=re.escape("guidance and guided must have the same spatial size")):
        unit(torch.randn(2, 6, 1, 2, 2), torch.randn(2, 4, 1, 3, 3))
    one_d_map = IterativeGatedFusion(6, 4, spatial_dims=1, guidance_1d="map")
    with pytest.raises(ValueError, match=re.escape("guidance_mask is only for a token-sequence guidance")):
        one_d_map(torch.randn(2, 6, 5), torch.randn(2, 4, 7), guidance_mask=torch.ones(2, 6, dtype=torch.bool))
