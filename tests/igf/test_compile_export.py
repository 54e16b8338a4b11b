"""torch.compile (fullgraph) parity, torch.export with a dynamic batch, ONNX export run in onnxruntime."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from igf import GATES, IterativeGatedFusion


def _module(gate: str = "asgate", **kwargs: object) -> IterativeGatedFusion:
    torch.manual_seed(0)
    return IterativeGatedFusion(8, 6, num_layers=3, heads=2, gate=gate, **kwargs).eval()


def _inputs(batch: int = 2, guidance_size: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, 8, *guidance_size, generator=generator), torch.randn(batch, 6, 5, 4, generator=generator)


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("guidance_size", [(), (3, 2)])
def test_compile_fullgraph_has_no_graph_break(gate: str, guidance_size: tuple[int, ...]) -> None:
    """Dynamo traces forward (and the intermediates variant) as one graph; the eager backend keeps this fast."""
    torch._dynamo.reset()
    module = _module(gate)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    inputs = _inputs(guidance_size=guidance_size)
    assert_close(compiled(*inputs), module(*inputs))
    with torch.no_grad():
        assert_close(
            compiled(*inputs, return_intermediates=True).fusions[-1],
            module(*inputs, return_intermediates=True).fusions[-1],
        )


def test_compile_fullgraph_checkpointed_training_step() -> None:
    torch._dynamo.reset()
    module = _module("convlstm", checkpoint=True).train()
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager")
    guidance, guided = _inputs()
    compiled(guidance, guided).sum().backward()
    expected = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    module(guidance, guided).sum().backward()
    for got, want in zip(expected, (p.grad for p in module.parameters()), strict=True):
        assert_close(got, want)


@pytest.mark.slow
def test_compile_inductor_matches_eager() -> None:
    torch._dynamo.reset()
    module = _module("asgate")
    compiled = torch.compile(module, fullgraph=True)
    inputs = _inputs()
    with torch.no_grad():
        assert_close(compiled(*inputs), module(*inputs), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gate", sorted(GATES))
def test_export_with_dynamic_batch(gate: str) -> None:
    module = _module(gate)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(module, _inputs(), dynamic_shapes={"guidance": {0: batch}, "guided": {0: batch}})
    assert "aten.tanh.default" in exported.graph_module.code  # an exported graph says tanh, not its sigmoid form
    for size in (1, 2, 5):
        inputs = _inputs(size)
        assert_close(exported.module()(*inputs), module(*inputs))


@pytest.mark.slow
@pytest.mark.parametrize("guidance_size", [(), (3, 2)])
def test_onnx_export_runs_in_onnxruntime(guidance_size: tuple[int, ...], tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    module = _module("convlstm")
    batch = torch.export.Dim("batch", min=1, max=64)
    path = tmp_path / "igf.onnx"
    torch.onnx.export(
        module,
        _inputs(guidance_size=guidance_size),
        str(path),
        dynamo=True,
        input_names=["guidance", "guided"],
        output_names=["output"],
        dynamic_shapes={"guidance": {0: batch}, "guided": {0: batch}},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for size in (2, 3):
        guidance, guided = _inputs(size, guidance_size)
        (output,) = session.run(None, {"guidance": guidance.numpy(), "guided": guided.numpy()})
        assert_close(torch.from_numpy(output), module(guidance, guided), rtol=1e-4, atol=1e-5)


def test_token_sequence_guidance_compiles_and_exports() -> None:
    torch._dynamo.reset()
    module = _module("asgate")
    generator = torch.Generator().manual_seed(0)
    tokens, guided = torch.randn(2, 4, 8, generator=generator), torch.randn(2, 6, 5, 4, generator=generator)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    expected = module(tokens, guided, guidance_mask=mask)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    assert_close(compiled(tokens, guided, guidance_mask=mask), expected)
    batch = torch.export.Dim("batch", min=1, max=64)
    exported = torch.export.export(
        module,
        (tokens, guided),
        {"guidance_mask": mask},
        dynamic_shapes={"guidance": {0: batch}, "guided": {0: batch}, "guidance_mask": {0: batch}},
    )
    assert_close(exported.module()(tokens, guided, guidance_mask=mask), expected)
    assert_close(
        exported.module()(tokens[:1], guided[:1], guidance_mask=mask[:1]),
        module(tokens[:1], guided[:1], guidance_mask=mask[:1]),
    )
