"""How much a head writes to the residual stream per key token: ``‖v[k, h] · W_O[h]‖`` (no bias).

The direct form multiplies every value vector by ``W_O[h]`` ``[d_head, d_model]`` and takes the norm:
``d_head × d_model`` multiply-adds per (token, head), and on CPU the einsum's ``[.., d_model]`` output
costs more to write and reduce than to compute. The same number is ``sqrt(v · G[h] · vᵀ)`` with the Gram
matrix ``G[h] = W_O[h] · W_O[h]ᵀ`` ``[d_head, d_head]``, computed once per model in float64: ``d_model /
d_head`` (12 for GPT-2) times fewer operations and no large intermediate. Against a float64 evaluation of
the direct form both are within ~2e-7 relative (float32 rounding); they are not bit-identical to each
other, so every path (collation, live inference, tests' brute force) uses this one.
"""

from __future__ import annotations

import torch


def head_grams(w_o: torch.Tensor) -> torch.Tensor:  # [head, d_head, d_model] -> [head, d_head, d_head]
    """``W_O[h] · W_O[h]ᵀ`` per head, summed in float64 and stored float32."""
    w = w_o.detach().to(torch.float64)
    return torch.einsum("hdm,hem->hde", w, w).to(torch.float32)


def value_write_norms(
    v: torch.Tensor,  # [..., head, d_head]
    gram: torch.Tensor,  # [head, d_head, d_head]
) -> torch.Tensor:  # [..., head] float32
    """``‖v · W_O[h]‖`` per head, from ``head_grams(W_O)``."""
    v = v.float()
    heads, d_head = v.shape[-2], v.shape[-1]
    per_head = v.reshape(-1, heads, d_head).transpose(0, 1)  # [head, tokens, d_head]
    squared = (torch.bmm(per_head, gram.to(v.device)) * per_head).sum(dim=-1)  # [head, tokens]
    # G is positive semi-definite; rounding can still leave -1e-9 where v·W_O ≈ 0.
    return squared.clamp_min(0).sqrt().transpose(0, 1).reshape(v.shape[:-1])
