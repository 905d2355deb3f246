"""Activation records, their provenance and a node's summary statistics."""

from __future__ import annotations

import math
from datetime import datetime

import strawberry

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.activations.views import RecordView
from neuron_explainer.provenance import Provenance as CoreProvenance
from neuron_explainer.schema.enums import DataSource
from neuron_explainer.schema.policy.declare import plain


@strawberry.type(
    description="Where a value came from: stored data or the live model.", directives=[plain(cacheable=True)]
)
class Provenance:
    source: DataSource
    dataset: str | None
    model: str | None
    computed_at: datetime | None

    @classmethod
    def of(cls, p: CoreProvenance) -> Provenance:
        return cls(source=p.source, dataset=p.dataset, model=p.model, computed_at=p.computed_at)


@strawberry.type(description="One token sequence and the node's values on it.", directives=[plain(cacheable=True)])
class ActivationRecord:
    tokens: list[str]
    activations: list[float] = strawberry.field(
        description="Per token; for attention heads the stored flattened lower triangle (query i, key j<=i)."
    )
    normalized_activations: list[float] = strawberry.field(
        description="max(x / (M - 1e-5), 0) with M the max over the node's top and random records (or the "
        "prompt's own values, live); can exceed 1."
    )
    attention_rows: list[list[float]] | None = strawberry.field(
        description="attentionRows[i]: query token i's values over the key tokens it attends to; null per-token."
    )
    provenance: Provenance

    @classmethod
    def of(cls, view: RecordView, provenance: CoreProvenance) -> ActivationRecord:
        return cls(
            tokens=view.tokens,
            activations=view.activations,
            normalized_activations=view.normalized,
            attention_rows=view.attention_rows,
            provenance=Provenance.of(provenance),
        )


def _finite(x: float) -> float | None:
    return None if math.isnan(x) or math.isinf(x) else x


@strawberry.type(
    description="Moments and quantile boundaries of the node's activations over the dataset's corpus.",
    directives=[plain(cacheable=True)],
)
class Stats:
    mean: float | None
    variance: float | None
    skewness: float | None
    kurtosis: float | None
    quantile_boundaries: list[float] | None = strawberry.field(
        description="Values of the corpus's per-sequence maxima at quantileLevels (ascending)."
    )
    quantile_levels: list[float] | None = strawberry.field(
        description="The quantile of each boundary (e.g. 0.5, 0.9, 0.99, 0.999), as the dataset's builder "
        "recorded them; null when the dataset does not say (the public datasets)."
    )
    provenance: Provenance

    @classmethod
    def of(cls, record: NeuronRecord, provenance: CoreProvenance, levels: list[float] | None = None) -> Stats:
        return cls(
            mean=_finite(record.mean),
            variance=_finite(record.variance),
            skewness=_finite(record.skewness),
            kurtosis=_finite(record.kurtosis),
            quantile_boundaries=record.quantile_boundaries,
            quantile_levels=levels,
            provenance=Provenance.of(provenance),
        )


@strawberry.type(description="Records sampled from one activation quantile bucket.", directives=[plain(cacheable=True)])
class QuantileSample:
    lower_bound: float | None
    upper_bound: float | None
    records: list[ActivationRecord]
