"""Display normalization of activations, as the original read routes did it (reference §1).

``M = max(0, max of every value of every given sequence)`` and ``normalized = max(x / (M - 1e-5), 0)``.
What surprises people:

- M is taken over **all sequences passed together** (TDB passes top + random sample of one record), so
  the same value normalizes differently depending on what it is shown with. Pass the same pool as the
  original to get its numbers.
- The result can slightly exceed 1 (``M / (M - 1e-5)``) and negative values become 0; raw values keep
  their sign elsewhere.
- When nothing is positive (M == 0) every normalized value is 0. TDB divided by ``-1e-5`` there, turning a
  value of -1 into 100000; we do not reproduce that.
- NaN values are ignored when taking M and normalize to 0 (a NaN cannot be displayed or sent as a
  GraphQL Float).
- Works the same for per-token lists and flattened token-pair lists (normalize the flat list, then
  ``attention.unflatten_rows`` both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPSILON = 1e-5
"""Subtracted from M before dividing, exactly as the original (``create_scale_linear``)."""


def normalization_max(values_per_sequence: Sequence[Sequence[float]]) -> float:
    """M: the largest value over all sequences, floored at 0, NaN ignored."""
    flat = _concatenate(values_per_sequence)  # [total_values]
    if flat.size == 0:
        return 0.0
    top = float(np.nanmax(flat, initial=0.0))
    return max(top, 0.0)


def normalize(
    values_per_sequence: Sequence[Sequence[float]], pool: Sequence[Sequence[float]] | None = None
) -> list[list[float]]:
    """Each sequence's values divided by the shared ``M - 1e-5`` and floored at 0 (see module docstring).

    M is taken over ``pool`` when given (e.g. a record's top + random sequences while showing only some
    of them), else over ``values_per_sequence`` itself.
    """
    if not values_per_sequence:
        return []
    flat = _concatenate(values_per_sequence)  # [total_values]
    m = normalization_max(pool) if pool is not None else (float(np.nanmax(flat, initial=0.0)) if flat.size else 0.0)
    if m <= 0.0:
        return [[0.0] * len(values) for values in values_per_sequence]
    scaled = np.maximum(flat / (m - EPSILON), 0.0)  # [total_values]; NaN stays NaN here
    scaled = np.nan_to_num(scaled, nan=0.0)
    bounds = np.cumsum([len(values) for values in values_per_sequence])[:-1]
    return [part.tolist() for part in np.split(scaled, bounds)]


def _concatenate(values_per_sequence: Sequence[Sequence[float]]) -> np.ndarray:
    if not values_per_sequence:
        return np.zeros(0, dtype=np.float64)
    return np.concatenate([np.asarray(values, dtype=np.float64).reshape(-1) for values in values_per_sequence])
