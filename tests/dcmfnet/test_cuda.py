"""DCMFNet on CUDA (the small ``model_cpu`` config): training steps in fp32 and under bf16/fp16 autocast, and the
same output as on the CPU. Skipped without CUDA (``pytest -m cuda`` runs them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from dcmfnet import DCMFNet, build_model, load_model_config

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]

CUDA = torch.device("cuda")
SIZE = 64


def _model(device: torch.device = CUDA) -> DCMFNet:
    """Built on the CPU (the same weights whatever the device), then moved."""
    torch.manual_seed(0)
    return build_model(load_model_config("model_cpu")).to(device)


def _batch(model: DCMFNet, device: torch.device, batch: int = 2) -> tuple[torch.Tensor, dict, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(batch, 3, SIZE, SIZE, generator=gen)
    target = (torch.rand(batch, 1, SIZE, SIZE, generator=gen) > 0.5).float()
    text = model.tokenize(["the big red circle on the left", "small blue square"][:batch], 8)
    return images.to(device), {k: v.to(device) for k, v in text.items()}, target.to(device)


@pytest.fixture
def no_tf32() -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_steps_on_cuda(precision: str) -> None:
    """Forward, loss, backward and Adam steps: finite logits and gradients for every parameter; the loss is
    computed, the weights move."""
    model = _model()
    model.train()
    images, text, target = _batch(model, CUDA)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(2):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(images, text)
            loss = F.binary_cross_entropy_with_logits(logits.float(), target)
        assert logits.shape == (2, 1, SIZE, SIZE) and logits.device.type == "cuda"
        assert torch.isfinite(logits).all() and torch.isfinite(loss)
        scaler.scale(loss).backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without gradient: {missing}"
        scaler.unscale_(optimizer)
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"non-finite gradients: {bad}"
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.usefixtures("no_tf32")
def test_cuda_matches_the_cpu() -> None:
    """The same weights and inputs on the CPU and on CUDA (TF32 off; eval mode: no dropout): the same logits and
    gradients."""
    results = []
    for device in (torch.device("cpu"), CUDA):
        model = _model(device)
        model.eval()
        images, text, target = _batch(model, device)
        logits = model(images, text)
        F.binary_cross_entropy_with_logits(logits, target).backward()
        results.append([logits.detach().cpu(), *(p.grad.cpu() for p in model.parameters() if p.grad is not None)])
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results, strict=True):
        assert_close(b, a, rtol=1e-3, atol=1e-4)
