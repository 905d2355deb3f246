"""Records as a reader sees them: values normalized against the node's pool, attention rows unflattened."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuron_explainer.activations.attention import unflatten_rows
from neuron_explainer.activations.normalize import normalize
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord


@dataclass(frozen=True, slots=True)
class RecordView:
    tokens: list[str]
    activations: list[float]
    """Per token; for token-pair records the stored flattened lower triangle, verbatim."""
    normalized: list[float]
    attention_rows: list[list[float]] | None
    """Query token i's values over the keys in its window; None for per-token records."""


def normalization_pool(record: NeuronRecord) -> list[list[float]]:
    """What the original read routes normalize against: every value of top *and* random records."""
    return [r.activations for r in record.most_positive_activation_records] + [
        r.activations for r in record.random_sample
    ]


def view_records(
    records: Sequence[ActivationRecord], pool: Sequence[Sequence[float]], token_pair: bool
) -> list[RecordView]:
    """Normalize ``records`` by the max over ``pool`` (reference §1: ``max(x / (M - 1e-5), 0)``)."""
    normalized = normalize([list(r.activations) for r in records], pool=pool)
    return [
        RecordView(
            tokens=list(r.tokens),
            activations=list(r.activations),
            normalized=norm,
            attention_rows=unflatten_rows(r.activations, len(r.tokens)) if token_pair else None,
        )
        for r, norm in zip(records, normalized, strict=True)
    ]
