"""Activation records: the unit of stored data about a node (Transformer Debugger's format, §2.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ActivationRecord:
    """One token sequence and the node's value on it.

    For per-token nodes ``len(activations) == len(tokens)``. For attention heads the activations are
    token pairs flattened row-major over the lower triangle (query i, key j <= i), possibly with a
    truncated attention window: see ``activations.attention``.
    """

    tokens: list[str]
    activations: list[float]


@dataclass(frozen=True, slots=True)
class NeuronRecord:
    """Everything a dataset holds about one node (TDB ``NeuronRecord``)."""

    layer: int
    index: int
    most_positive_activation_records: list[ActivationRecord]
    random_sample: list[ActivationRecord] = field(default_factory=list)
    random_sample_by_quantile: list[list[ActivationRecord]] | None = None
    quantile_boundaries: list[float] | None = None
    mean: float = math.nan
    variance: float = math.nan
    skewness: float = math.nan
    kurtosis: float = math.nan

    @property
    def max_activation(self) -> float:
        """Max over the top records only, as the original defines it (not the random sample)."""
        values = [a for r in self.most_positive_activation_records for a in r.activations]
        return max(values) if values else 0.0
