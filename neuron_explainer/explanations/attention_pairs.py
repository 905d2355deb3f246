"""Token pairs of attention-head records, and how prompts show one.

Records of a head hold one value per (query i, key j <= i) pair, flattened row-major (reference
§2.4). Unlike the original explainer and scorer we also handle truncated attention windows.
TODO(merge): delegate ``pair_coords`` to Stream A's ``activations.attention.unflatten_rows``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from neuron_explainer.activations.records import ActivationRecord
from neuron_explainer.errors import BadInput


@dataclass(frozen=True, slots=True)
class TokenPair:
    record: int
    """Index of the record in the list it came from."""
    query: int
    """The attending ("from") token, the later one."""
    key: int
    """The attended ("to") token; ``key <= query``."""
    value: float


def pair_coords(n_tokens: int, n_values: int) -> list[tuple[int, int]]:
    """(query, key) of each flat position; row lengths 1, 2, .., W then W (window W)."""
    full = n_tokens * (n_tokens + 1) // 2
    missing = full - n_values
    if missing < 0:
        raise BadInput(f"{n_values} token-pair values cannot belong to {n_tokens} tokens")
    dropped = (math.isqrt(8 * missing + 1) - 1) // 2
    if dropped * (dropped + 1) // 2 != missing:
        raise BadInput(f"{n_values} token-pair values is no attention window over {n_tokens} tokens")
    window = n_tokens - dropped
    return [(i, j) for i in range(n_tokens) for j in range(max(0, i - window + 1), i + 1)]


def all_pairs(records: Sequence[ActivationRecord]) -> list[TokenPair]:
    return [
        TokenPair(r, i, j, value)
        for r, record in enumerate(records)
        for (i, j), value in zip(
            pair_coords(len(record.tokens), len(record.activations)), record.activations, strict=True
        )
    ]


def top_pairs(records: Sequence[ActivationRecord], k: int) -> list[TokenPair]:
    return sorted(all_pairs(records), key=lambda p: p.value, reverse=True)[:k]


def mark_pair(tokens: Sequence[str], query: int, key: int) -> str:
    """The sequence with the attended token as ``**to**`` and the attending one as ``[[from]]``."""
    shown = []
    for n, token in enumerate(tokens):
        body = token.lstrip()
        space = token[: len(token) - len(body)]  # markers go inside leading whitespace: " **cat**"
        if n == query == key:
            token = f"{space}[[**{body}**]]"
        elif n == key:
            token = f"{space}**{body}**"
        elif n == query:
            token = f"{space}[[{body}]]"
        shown.append(token)
    return "".join(shown)
