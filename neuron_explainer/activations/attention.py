"""Token-pair flattening of attention records (Transformer Debugger's layout, reference §2.4).

An attention-head record stores one scalar per (query token i, key token j) pair in a single flat list,
row by row in ``torch.tril_indices`` order: (0,0), (1,0), (1,1), (2,0), (2,1), (2,2), ... Row i holds
query token i's values over the keys it attends to, so ``unflatten_rows`` returns rows of lengths
1, 2, ..., n for a sequence of n tokens (the square case, ``n(n+1)/2`` values).

What surprises people:

- **Truncated attention windows.** A record may hold fewer values: rows grow 1, 2, ..., W and then stay
  at W for the rest of the sequence. Nothing in the file says W; it is inferred from the two lengths:
  ``missing = n(n+1)/2 - len(values)`` must be the triangular number ``T(n - W)``. Row i of a truncated
  record holds ``min(i + 1, W)`` values in stored order; the format does not record which key positions
  they belong to (a sliding window would mean keys ``i - W + 1 .. i``; TDB itself only ever indexes
  within the row), so we return rows, not a square matrix.
- **W = 1 looks like a per-token record**: n values for n tokens. The layout alone cannot tell a head
  record from a neuron record; the node kind does.
- Impossible lengths raise ``ValueError`` naming both lengths; TDB asserted instead.

Pure Python: the inverse triangular number uses ``math.isqrt`` so it is exact for any length (TDB's
floating-point square root is not, past ~2**52).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import accumulate


def triangular(m: int) -> int:
    """The m-th triangular number ``m(m+1)/2``: how many token pairs a square n=m record holds."""
    return m * (m + 1) // 2


def inverse_triangular(t: int) -> int:
    """The m with ``m(m+1)/2 == t``; ``ValueError`` when t is not a triangular number."""
    if t < 0:
        raise ValueError(f"{t} is negative, not a triangular number")
    m = (math.isqrt(8 * t + 1) - 1) // 2
    if triangular(m) != t:
        raise ValueError(f"{t} is not a triangular number")
    return m


def attention_window(n_tokens: int, n_values: int) -> int:
    """The attention window W of a flattened record of ``n_values`` over ``n_tokens`` tokens.

    W == n_tokens in the square case. ``ValueError`` when no window fits (the record is corrupt or is
    not a token-pair record).
    """
    if n_tokens < 0 or n_values < 0:
        raise ValueError(f"negative length: {n_tokens} tokens, {n_values} values")
    full = triangular(n_tokens)
    if n_values == full:
        return n_tokens
    if n_values > full:
        raise ValueError(
            f"{n_values} token-pair values for {n_tokens} tokens: more than the {full} pairs of a full lower triangle"
        )
    try:
        missing_rows = inverse_triangular(full - n_values)
    except ValueError:
        raise ValueError(
            f"{n_values} token-pair values for {n_tokens} tokens: the {full - n_values} missing values are "
            f"not a triangular number, so no attention window fits"
        ) from None
    window = n_tokens - missing_rows
    if window < 1:  # only reachable with n_values == 0 and n_tokens > 0
        raise ValueError(f"{n_values} token-pair values for {n_tokens} tokens: every row would be empty")
    return window


def is_valid_flat_length(n_tokens: int, n_values: int) -> bool:
    """Whether some attention window fits; true for every per-token length too (window 1)."""
    try:
        attention_window(n_tokens, n_values)
    except ValueError:
        return False
    return True


def row_lengths(n_tokens: int, window: int) -> list[int]:
    """Row i's length, ``min(i + 1, window)``, for each query token i."""
    if not 0 <= window <= n_tokens or (window == 0 and n_tokens > 0):
        raise ValueError(f"attention window {window} is impossible for {n_tokens} tokens")
    return [min(i + 1, window) for i in range(n_tokens)]


def flat_index_to_pair(flat_index: int, n_tokens: int | None = None, n_values: int | None = None) -> tuple[int, int]:
    """(query row i, position j within the row) of a flat index.

    Without lengths the square layout is assumed (j is then also the key token). With both lengths a
    truncated window is handled; j is the offset within row i (see the module docstring).
    """
    if (n_tokens is None) != (n_values is None):
        raise ValueError("give both n_tokens and n_values, or neither")
    if flat_index < 0:
        raise ValueError(f"flat index {flat_index} is negative")
    if n_tokens is None or n_values is None or n_values == triangular(n_tokens):
        if n_values is not None and flat_index >= n_values:
            raise ValueError(f"flat index {flat_index} is out of range for {n_values} values")
        i = (math.isqrt(8 * flat_index + 1) - 1) // 2
        return i, flat_index - triangular(i)
    if flat_index >= n_values:
        raise ValueError(f"flat index {flat_index} is out of range for {n_values} values")
    window = attention_window(n_tokens, n_values)
    square_part = triangular(window)  # rows 0 .. window-1 form a square triangle
    if flat_index < square_part:
        i = (math.isqrt(8 * flat_index + 1) - 1) // 2
        return i, flat_index - triangular(i)
    rest = flat_index - square_part
    return window + rest // window, rest % window


def unflatten_rows(flat: Sequence[float], n_tokens: int) -> list[list[float]]:
    """Split a flat token-pair list into one row per query token (row i: its values over its keys).

    ``ValueError`` when ``len(flat)`` fits no attention window for ``n_tokens`` tokens.
    """
    window = attention_window(n_tokens, len(flat))
    values = list(flat)
    offsets = [0, *accumulate(row_lengths(n_tokens, window))]
    return [values[offsets[i] : offsets[i + 1]] for i in range(n_tokens)]


def flatten_rows(rows: Sequence[Sequence[float]]) -> list[float]:
    """The inverse of ``unflatten_rows``: concatenate rows in ``tril_indices`` order.

    Rows must have the lengths of some attention window W (1, 2, ..., W, then W); anything else raises
    ``ValueError`` naming the first row that does not fit, because it could not be read back.
    """
    window = max((len(row) for row in rows), default=0)
    if rows and window == 0:
        raise ValueError(f"all {len(rows)} rows are empty; every query token attends to at least itself")
    flat: list[float] = []
    for i, row in enumerate(rows):
        expected = min(i + 1, window)
        if len(row) != expected:
            raise ValueError(
                f"row {i} has {len(row)} values; a token-pair record with attention window {window} needs "
                f"{expected} (rows grow 1, 2, ..., W and then stay at W)"
            )
        flat.extend(row)
    return flat
