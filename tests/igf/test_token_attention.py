"""``token_pooling="attention"``: each guided position attends over the real tokens (not in the paper).

The reference below computes the attended guidance one sample and one position at a time, over the
real tokens only, then hands it to the plain reference of Eq. 1-4 as a map guidance.
"""

from __future__ import annotations

import re

import pytest
import torch
from torch import Tensor
from torch.testing import assert_close

from igf import IterativeGatedFusion
from igf.functional import masked_attention
from tests.igf import reference

F64 = {"dtype": torch.float64}
SIZES = {1: (5,), 2: (4, 3), 3: (2, 3, 2)}


def attended_guidance(state: reference.StateDict, tokens: Tensor, guided: Tensor, mask: Tensor) -> Tensor:
    """Per position p: softmax over real tokens of (W_q Y_p + b_q) . (W_k L_t + b_k) / sqrt(C_k), times L_t."""
    w_q, b_q = state["attention_query.weight"].flatten(1), state["attention_query.bias"]
    w_k, b_k = state["attention_key.weight"], state["attention_key.bias"]
    samples = []
    for sample, words, keep in zip(guided, tokens, mask.bool(), strict=True):
        positions = sample.flatten(1).t()  # (N, C_y)
        real = words[keep]
        columns = []
        for position in positions:
            if len(real) == 0:
                columns.append(torch.zeros_like(words[0]))
                continue
            query = w_q @ position + b_q
            logits = torch.stack([query @ (w_k @ word + b_k) for word in real]) / len(b_k) ** 0.5
            weights = torch.softmax(logits, dim=0)
            columns.append(sum(weight * word for weight, word in zip(weights, real, strict=True)))
        samples.append(torch.stack(columns, dim=1).unflatten(1, sample.shape[1:]))
    return torch.stack(samples)


def _module(rank: int = 2, **kwargs: object) -> IterativeGatedFusion:
    torch.manual_seed(0)
    options: dict[str, object] = {"num_layers": 2, "heads": 2, "token_pooling": "attention", "spatial_dims": rank}
    return IterativeGatedFusion(6, 4, **{**options, **F64, **kwargs})  # type: ignore[arg-type]


MASK = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize(("fused", "checkpoint"), [(True, False), (False, False), (True, True)])
def test_matches_the_reference(rank: int, fused: bool, checkpoint: bool) -> None:
    module = _module(rank, fused=fused, checkpoint=checkpoint, gate="convgru" if checkpoint else "asgate")
    tokens, guided = torch.randn(3, 5, 6, **F64), torch.randn(3, 4, *SIZES[rank], **F64)
    tokens[MASK == 0] = float("nan")  # padding is selected away, whatever it holds
    state = module.state_dict()
    guidance = attended_guidance(state, tokens, guided, MASK)
    expected = reference.iterative_gated_fusion(
        state, guidance, guided, num_layers=2, heads=2, gate="convgru" if checkpoint else "asgate",
        output_mode="all_fusions",
    )[0]  # fmt: skip
    got = module(tokens, guided, guidance_mask=MASK)
    assert_close(got, expected, rtol=1e-10, atol=1e-10)
    got.sum().backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in module.parameters())


def test_without_a_mask_every_token_is_real() -> None:
    module = _module()
    tokens, guided = torch.randn(2, 5, 6, **F64), torch.randn(2, 4, 4, 3, **F64)
    all_real = torch.ones(2, 5, dtype=torch.bool)
    assert_close(module(tokens, guided), module(tokens, guided, guidance_mask=all_real))


def test_vector_and_map_guidance_are_unaffected() -> None:
    attention, mean = _module(), _module(token_pooling="mean")
    mean.load_state_dict(attention.state_dict(), strict=False)
    guided = torch.randn(2, 4, 4, 3, **F64)
    for guidance in (torch.randn(2, 6, **F64), torch.randn(2, 6, 2, 2, **F64)):
        assert_close(attention(guidance, guided), mean(guidance, guided))


def test_mean_pooling_keeps_the_state_dict_keys() -> None:
    mean, attention = _module(token_pooling="mean"), _module()
    extra = set(attention.state_dict()) - set(mean.state_dict())
    assert extra == {"attention_query.weight", "attention_query.bias", "attention_key.weight", "attention_key.bias"}


def test_masked_attention_of_a_fully_masked_row_is_zero_with_finite_gradients() -> None:
    queries = torch.randn(2, 4, 3, **F64, requires_grad=True)
    keys = torch.randn(2, 5, 3, **F64, requires_grad=True)
    values = torch.randn(2, 5, 6, **F64, requires_grad=True)
    mask = torch.tensor([[0, 0, 0, 0, 0], [1, 0, 1, 0, 0]])
    out = masked_attention(queries, keys, values, mask)
    assert torch.equal(out[0], torch.zeros(4, 6, **F64))
    out.square().sum().backward()
    for tensor in (queries, keys, values):
        assert tensor.grad is not None and tensor.grad.isfinite().all()
    assert torch.equal(values.grad[1, 1], torch.zeros(6, **F64))  # type: ignore[index]
    assert torch.autograd.gradcheck(lambda q, k, v: masked_attention(q, k, v, mask), (queries, keys, values))


@pytest.mark.parametrize("rank", [1, 3])
def test_gradcheck_float64(rank: int) -> None:
    torch.manual_seed(0)
    module = IterativeGatedFusion(3, 2, num_layers=2, heads=1, token_pooling="attention", spatial_dims=rank, **F64)
    tokens = torch.randn(2, 3, 3, **F64, requires_grad=True)
    guided = torch.randn(2, 2, *{1: (3,), 3: (1, 2, 2)}[rank], **F64, requires_grad=True)
    mask = torch.tensor([[1, 0, 1], [0, 0, 0]])
    assert torch.autograd.gradcheck(lambda x, y: module(x, y, guidance_mask=mask), (tokens, guided))


def test_compile_fullgraph_and_export_match_eager() -> None:
    torch._dynamo.reset()
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, token_pooling="attention").eval()
    tokens, guided, mask = torch.randn(3, 5, 6), torch.randn(3, 4, 4, 3), MASK
    expected = module(tokens, guided, guidance_mask=mask)
    compiled = torch.compile(module, fullgraph=True, backend="eager")
    assert_close(compiled(tokens, guided, guidance_mask=mask), expected)
    program = torch.export.export(module, (tokens, guided), {"guidance_mask": mask})
    assert_close(program.module()(tokens, guided, guidance_mask=mask), expected)


def test_bf16_autocast_and_empty_batch() -> None:
    module = IterativeGatedFusion(6, 4, num_layers=2, heads=2, token_pooling="attention")
    tokens, guided = torch.randn(3, 5, 6), torch.randn(3, 4, 4, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = module(tokens, guided, guidance_mask=MASK)
    assert output.dtype == torch.bfloat16
    assert_close(output.float(), module(tokens, guided, guidance_mask=MASK), rtol=0.05, atol=0.05)
    empty = module(torch.randn(0, 5, 6), guided[:0], guidance_mask=MASK[:0])
    assert empty.shape == (0, 4, 4, 3)
    empty.sum().backward()


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match=re.escape("token_pooling must be one of ['mean', 'attention'], got 'max'")):
        IterativeGatedFusion(6, 4, token_pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=re.escape("guidance_1d='map' reads no tokens")):
        IterativeGatedFusion(6, 4, spatial_dims=1, guidance_1d="map", token_pooling="attention")
