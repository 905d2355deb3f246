"""``value_write_norms`` (Gram form) equals ``‖v · W_O[h]‖`` evaluated directly in float64."""

from __future__ import annotations

import pytest
import torch

from neuron_explainer.models.write_norms import head_grams, value_write_norms


@pytest.mark.parametrize(("heads", "d_head", "d_model"), [(4, 16, 64), (12, 64, 768)])
def test_gram_form_equals_the_direct_norm(heads: int, d_head: int, d_model: int) -> None:
    g = torch.Generator().manual_seed(heads)
    w_o = torch.randn(heads, d_head, d_model, generator=g) / d_model**0.5  # [head, d_head, d_model]
    v = torch.randn(3, 20, heads, d_head, generator=g) * 4  # [batch, key, head, d_head]
    v[0, 0] = 0.0  # a zero value vector writes nothing (no NaN from rounding below zero)

    got = value_write_norms(v, head_grams(w_o))  # [batch, key, head]
    direct = torch.einsum("bkhd,hdm->bkhm", v.double(), w_o.double()).norm(dim=-1)

    assert got.shape == (3, 20, heads) and got.dtype == torch.float32
    assert got[0, 0].eq(0).all()
    torch.testing.assert_close(got.double(), direct, rtol=1e-6, atol=1e-7)


def test_one_prompt_without_a_batch_dimension() -> None:
    w_o = torch.randn(2, 8, 32, generator=torch.Generator().manual_seed(1))
    v = torch.randn(5, 2, 8, generator=torch.Generator().manual_seed(2))  # [key, head, d_head]
    direct = torch.einsum("khd,hdm->khm", v.double(), w_o.double()).norm(dim=-1)
    torch.testing.assert_close(value_write_norms(v, head_grams(w_o)).double(), direct, rtol=1e-6, atol=1e-7)
