"""Choosing where a node's records come from (stored or live) and saying so in the provenance."""

from __future__ import annotations

from dataclasses import dataclass

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.activations.views import RecordView, normalization_pool, view_records
from neuron_explainer.errors import BadInput, ModelNotLoaded, NotFound
from neuron_explainer.nodes import NodeId
from neuron_explainer.provenance import DataSource, Provenance
from resolvers.context import Context


@dataclass(frozen=True, slots=True)
class ResolvedRecord:
    record: NeuronRecord
    provenance: Provenance


async def resolve_record(ctx: Context, node: NodeId, source: DataSource) -> ResolvedRecord:
    """Stored when a dataset has the node; otherwise live (when a model runs and can compute it)."""
    live = ctx.services.extras.get("live_records")
    if source is not DataSource.LIVE:
        try:
            stored = await ctx.loaders.records.load(node)
            return ResolvedRecord(stored.record, Provenance(DataSource.STORED, dataset=stored.dataset.name))
        except NotFound:
            if source is DataSource.STORED or (live is None and ctx.services.engine is None):
                raise
    if ctx.services.engine is None:
        raise ModelNotLoaded(
            f"{node} has no stored record and no model is running (--run_model False)", node=str(node)
        )
    if live is None:
        raise NotFound(f"{node}: live top-activating records are not available on this server", node=str(node))
    ctx.cacheable = False
    result: ResolvedRecord = await live(ctx, node)
    return result


def _check_first(first: int | None) -> None:
    if first is not None and first < 0:
        raise BadInput(f"first must be >= 0, got {first}", argument="first")


async def top_activations(ctx: Context, node: NodeId, first: int | None, source: DataSource) -> list[tuple[RecordView, Provenance]]:
    _check_first(first)
    resolved = await resolve_record(ctx, node, source)
    records = resolved.record.most_positive_activation_records[:first]
    views = view_records(records, normalization_pool(resolved.record), node.kind.is_token_pair)
    return [(v, resolved.provenance) for v in views]


async def random_sample(ctx: Context, node: NodeId, first: int | None, source: DataSource) -> list[tuple[RecordView, Provenance]]:
    _check_first(first)
    resolved = await resolve_record(ctx, node, source)
    records = resolved.record.random_sample[:first]
    views = view_records(records, normalization_pool(resolved.record), node.kind.is_token_pair)
    return [(v, resolved.provenance) for v in views]


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
        out.append((lower, upper, view_records(bucket[:first], pool, node.kind.is_token_pair), resolved.provenance))
    return out


async def max_activation(ctx: Context, node: NodeId, source: DataSource) -> float:
    return (await resolve_record(ctx, node, source)).record.max_activation
