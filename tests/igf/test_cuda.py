"""IGF on CUDA: the fused step against the plain one and against the CPU, every gate, bf16/fp16 autocast,
``torch.compile`` (Inductor) and checkpointing's peak memory. Skipped without CUDA (``pytest -m cuda`` runs them)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from igf import GATES, IterativeGatedFusion

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]

CUDA = torch.device("cuda")


def _module(gate: str = "asgate", **kwargs: object) -> IterativeGatedFusion:
    torch.manual_seed(0)
    options: dict = {"num_layers": 3, "heads": 2, "hidden_channels": 8, "guidance_hidden_channels": 6, **kwargs}
    return IterativeGatedFusion(12, 10, gate=gate, **options)


def _inputs(guidance_shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    guidance = torch.randn(*guidance_shape, generator=gen, dtype=dtype)
    guided = torch.randn(2, 10, 9, 7, generator=gen, dtype=dtype)
    return [guidance, guided]


def _output_and_grads(module: IterativeGatedFusion, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [x.clone().requires_grad_() for x in inputs]
    out = module(*leaves)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.device, out.dtype)
    grads = torch.autograd.grad((out * weights).sum(), [*leaves, *module.parameters()])
    return [out.detach(), *grads]


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("guidance_shape", [(2, 12), (2, 12, 4, 3)], ids=["vector", "map"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_fused_matches_plain_and_the_cpu_in_float64(
    gate: str, guidance_shape: tuple[int, ...], checkpoint: bool
) -> None:
    """Float64 (no TF32): fused and plain on CUDA, and fused on the CPU, give the same output and gradients."""
    inputs = _inputs(guidance_shape, torch.float64)
    cpu = _output_and_grads(_module(gate, checkpoint=checkpoint, dtype=torch.float64), inputs)
    cuda_inputs = [x.to(CUDA) for x in inputs]
    fused = _output_and_grads(_module(gate, checkpoint=checkpoint, dtype=torch.float64).to(CUDA), cuda_inputs)
    plain = _output_and_grads(
        _module(gate, checkpoint=checkpoint, fused=False, dtype=torch.float64).to(CUDA), cuda_inputs
    )
    for a, b, c in zip(fused, plain, cpu, strict=True):
        assert a.device.type == "cuda"
        assert_close(a, b, rtol=1e-9, atol=1e-9)
        assert_close(a.cpu(), c, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("gate", sorted(GATES))
def test_fused_matches_plain_in_float32(gate: str) -> None:
    """Float32 as trained (cuDNN may use TF32): fused and plain agree to TF32's precision."""
    inputs = [x.to(CUDA) for x in _inputs((2, 12))]
    fused = _output_and_grads(_module(gate).to(CUDA), inputs)
    plain = _output_and_grads(_module(gate, fused=False).to(CUDA), inputs)
    for a, b in zip(fused, plain, strict=True):
        assert torch.isfinite(a).all()
        assert_close(a, b, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("checkpoint", [False, True])
def test_autocast_fused_matches_plain(dtype: torch.dtype, checkpoint: bool) -> None:
    inputs = [x.to(CUDA) for x in _inputs((2, 12, 4, 3))]
    results = []
    for fused in (True, False):
        module = _module(checkpoint=checkpoint, fused=fused).to(CUDA)
        with torch.autocast("cuda", dtype=dtype):
            leaves = [x.clone().requires_grad_() for x in inputs]
            out = module(*leaves)
        assert out.dtype == dtype
        grads = torch.autograd.grad(out.float().square().sum(), [*leaves, *module.parameters()])
        assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
        results.append([out.float(), *grads])
    for a, b in zip(*results, strict=True):
        assert_close(a, b, rtol=0.05, atol=0.05)


def test_compile_inductor_training_step_matches_eager() -> None:
    """``torch.compile(fullgraph=True)`` with Inductor on CUDA: output and parameter gradients as in eager mode."""
    torch._dynamo.reset()
    module = _module().to(CUDA)
    inputs = [x.to(CUDA) for x in _inputs((2, 12))]
    compiled = torch.compile(module, fullgraph=True)
    got = compiled(*inputs)
    got.square().sum().backward()
    got_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    expected = module(*inputs)
    expected.square().sum().backward()
    assert_close(got, expected, rtol=1e-3, atol=1e-3)
    for a, b in zip(got_grads, (p.grad for p in module.parameters()), strict=True):
        assert_close(a, b, rtol=1e-3, atol=1e-3)


def test_checkpointing_lowers_the_cuda_training_peak() -> None:
    """``torch.cuda.max_memory_allocated`` of forward + backward: checkpointing keeps less than the fused step,
    which keeps less than the plain one."""
    gen = torch.Generator().manual_seed(0)
    guidance = torch.randn(4, 64, generator=gen).to(CUDA)
    guided = torch.randn(4, 64, 48, 48, generator=gen).to(CUDA)
    peaks = {}
    for name, options in {
        "plain": {"fused": False},
        "fused": {},
        "checkpoint": {"checkpoint": True},
    }.items():
        torch.manual_seed(0)
        module = IterativeGatedFusion(64, 64, num_layers=5, heads=4, **options).to(CUDA)  # type: ignore[arg-type]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        module(guidance, guided.clone().requires_grad_()).sum().backward()
        torch.cuda.synchronize()
        peaks[name] = torch.cuda.max_memory_allocated() - before
        del module
    assert peaks["checkpoint"] < peaks["fused"] < peaks["plain"]
