"""Token pairs of attention-head records, and how prompts show one.

Records of a head hold one value per (query i, key j <= i) pair, flattened row-major (reference
§2.4). Unlike the original explainer and scorer (which assumed the square case) we also read
truncated attention windows, in the original's own layout: a record of n tokens and window W is
``flatten_lower_triangle`` of an n x W matrix, i.e. ``torch.tril_indices(n, W)`` order, so row i holds
keys 0 .. min(i, W - 1) and position j of a row *is* key token j (as the original's read route and
``convert_flattened_index_to_unflattened_index`` read it). It is not a sliding window over
i - W + 1 .. i: for n = 3, W = 2, flat index 3 is (2, 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuron_explainer.activations.attention import attention_window, row_lengths
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
    """(query, key) of each flat position, in ``torch.tril_indices(n_tokens, W)`` order (module docstring).

    ``BadInput`` when no attention window W fits the two lengths."""
    try:
        window = attention_window(n_tokens, n_values)
    except ValueError as e:
        raise BadInput(f"not a token-pair record: {e}", tokens=n_tokens, values=n_values) from None
    return [(i, j) for i, length in enumerate(row_lengths(n_tokens, window)) for j in range(length)]


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
