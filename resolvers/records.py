"""Choosing where a node's records come from (stored or live) and saying so in the provenance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.activations.tdb_json import all_finite
from neuron_explainer.activations.views import RecordView, normalization_pool, view_records
from neuron_explainer.errors import BadInput, CorruptBlob, ModelNotLoaded, NotFound
from neuron_explainer.nodes import NodeId
from neuron_explainer.provenance import DataSource, Provenance
from neuron_explainer.resolvers.context import Context


@dataclass(frozen=True, slots=True)
class ResolvedRecord:
    record: NeuronRecord
    provenance: Provenance


async def resolve_record(ctx: Context, node: NodeId, source: DataSource) -> ResolvedRecord:
    """Stored when a dataset has the node; otherwise live, when the running model has the node (a
    node of another model is ``NOT_FOUND`` with ``AUTO``, ``BAD_USER_INPUT`` with ``LIVE``)."""
    live = ctx.services.live_records
    model = ctx.services.model
    if source is not DataSource.LIVE:
        try:
            stored = await ctx.loaders.records.load(node)
            return ResolvedRecord(stored.record, Provenance(DataSource.STORED, dataset=stored.dataset.name))
        except NotFound as missing:
            if source is DataSource.STORED or (live is None and ctx.services.engine is None):
                raise
            if model is not None and node.model != model.name:
                raise NotFound(
                    f"{missing.message}; live records are computed only for the running model {model.name}",
                    **missing.fields,
                ) from None
    if ctx.services.engine is None:
        raise ModelNotLoaded(f"{node} has no stored record and no model is running (--run_model False)", node=str(node))
    if live is None:
        raise NotFound(f"{node}: live top-activating records are not available on this server", node=str(node))
    ctx.cacheable = False
    stored = await live(node)
    name = model.name if model is not None else None
    return ResolvedRecord(stored.record, Provenance(DataSource.LIVE, stored.dataset.name, name, datetime.now(UTC)))


def _finite_views(views: list[RecordView], node: NodeId, provenance: Provenance) -> list[tuple[RecordView, Provenance]]:
    """GraphQL floats cannot carry NaN: a stored NaN activation is reported as corrupt data, by name."""
    for i, view in enumerate(views):
        if not all_finite(view.activations):
            raise CorruptBlob(
                f"{node}: record {i} in dataset {provenance.dataset} holds a non-finite activation",
                node=str(node),
                dataset=provenance.dataset,
            )
    return [(v, provenance) for v in views]


MAX_FIRST = 10_000


def _check_first(first: int | None) -> None:
    if first is not None and not 0 <= first <= MAX_FIRST:
        raise BadInput(f"first must be within 0..{MAX_FIRST}, got {first}", argument="first")


async def _records(
    ctx: Context,
    node: NodeId,
    first: int | None,
    source: DataSource,
    pick: Callable[[NeuronRecord], list[ActivationRecord]],
) -> list[tuple[RecordView, Provenance]]:
    _check_first(first)
    resolved = await resolve_record(ctx, node, source)
    views = view_records(pick(resolved.record)[:first], normalization_pool(resolved.record), node.kind.is_token_pair)
    return _finite_views(views, node, resolved.provenance)


async def top_activations(
    ctx: Context, node: NodeId, first: int | None, source: DataSource
) -> list[tuple[RecordView, Provenance]]:
    return await _records(ctx, node, first, source, lambda r: r.most_positive_activation_records)


async def random_sample(
    ctx: Context, node: NodeId, first: int | None, source: DataSource
) -> list[tuple[RecordView, Provenance]]:
    return await _records(ctx, node, first, source, lambda r: r.random_sample)


async def quantile_samples(
    ctx: Context, node: NodeId, first: int | None, source: DataSource
) -> list[tuple[float | None, float | None, list[RecordView], Provenance]]:
    """Each quantile bucket with its bounds; bucket i lies between boundaries i-1 and i."""
    _check_first(first)
    resolved = await resolve_record(ctx, node, source)
    rec = resolved.record
    buckets = rec.random_sample_by_quantile or []
    bounds = rec.quantile_boundaries or []
    pool = normalization_pool(rec)
    out = []
    for i, bucket in enumerate(buckets):
        lower = bounds[i - 1] if 0 < i <= len(bounds) else None
        upper = bounds[i] if i < len(bounds) else None
        views = view_records(bucket[:first], pool, node.kind.is_token_pair)
        _finite_views(views, node, resolved.provenance)
        out.append((lower, upper, views, resolved.provenance))
    return out


async def max_activation(ctx: Context, node: NodeId, source: DataSource) -> float:
    return (await resolve_record(ctx, node, source)).record.max_activation


async def quantile_levels(ctx: Context, resolved: ResolvedRecord) -> list[float] | None:
    """The quantile levels of the record's ``quantile_boundaries``, as its dataset's builder recorded them
    (fractions of the corpus's per-sequence maxima at or below each boundary); ``None`` when unknown."""
    boundaries = resolved.record.quantile_boundaries
    if not boundaries or resolved.provenance.dataset is None:
        return None
    try:
        spec = ctx.services.registry.get(resolved.provenance.dataset)
    except NotFound:
        return None
    metadata = await ctx.services.reader.dataset_metadata(spec)
    levels = (metadata or {}).get("quantiles")
    if not isinstance(levels, list) or len(levels) != len(boundaries):
        return None
    if not all(isinstance(q, int | float) and 0 < q < 1 for q in levels):
        return None
    return [float(q) for q in levels]
