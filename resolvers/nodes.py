"""Turning an id into a node the server can answer for, and listing nodes."""

from __future__ import annotations

from neuron_explainer.errors import BadInput, NotFound
from neuron_explainer.models.shapes import ModelShape, check_bounds
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.reader import StoredExplanation
from resolvers.context import Context


def _shape_for(ctx: Context, node: NodeId) -> ModelShape:
    shape = ctx.services.shape(node.model)
    if shape is None:
        known = sorted({*ctx.services.registry.models()} | ({ctx.services.model.name} if ctx.services.model else set()))
        raise NotFound(f"unknown model {node.model!r} (known: {', '.join(known)})", model=node.model)
    return shape


def _latent_count(ctx: Context, node: NodeId) -> int | None:
    if node.autoencoder is None:
        return None
    counts: dict[str, int] = ctx.services.extras.get("latent_counts", {})
    if node.autoencoder in counts:
        return counts[node.autoencoder]
    from neuron_explainer.models.shapes import AUTOENCODER_LATENTS

    return AUTOENCODER_LATENTS.get(node.autoencoder)


def resolve_node(ctx: Context, text: str) -> NodeId:
    """Parse and bounds-check an id: out of range is ``BAD_USER_INPUT`` naming the bound, never a blob miss."""
    node = ctx.services.parse_node_id(text)
    check_bounds(node, _shape_for(ctx, node), _latent_count(ctx, node))
    return node


async def explanations(ctx: Context, node: NodeId) -> list[StoredExplanation]:
    """Every stored explanation of the node across its explanation datasets; none is an empty list."""
    try:
        return await ctx.loaders.explanations.load(node)
    except NotFound:
        return []


def count_nodes(ctx: Context, model: str, kind_or_autoencoder: str, layer: int) -> tuple[NodeId, int]:
    """The first node of a layer (for its kind) and how many nodes that layer has."""
    first = resolve_node(ctx, f"{model}/{kind_or_autoencoder}/{layer}/0")
    shape = _shape_for(ctx, first)
    if first.kind is NodeKind.MLP_NEURON:
        total = shape.d_mlp
    elif first.kind is NodeKind.ATTENTION_HEAD:
        total = shape.n_heads
    else:
        latents = _latent_count(ctx, first)
        if latents is None:
            raise NotFound(f"latent count of {first.autoencoder!r} is unknown", autoencoder=first.autoencoder)
        total = latents
    return first, total


def page_bounds(total: int, first: int, after: str | None) -> tuple[int, int]:
    if first < 0 or first > 1000:
        raise BadInput(f"first must be within 0..1000, got {first}", argument="first")
    start = 0
    if after is not None:
        if not after.isdigit():
            raise BadInput(f"cursor {after!r} is not one this server issued", argument="after")
        start = int(after) + 1
    return start, min(total, start + first)
