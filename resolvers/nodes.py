"""Turning an id into a node the server can answer for, and listing nodes."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from neuron_explainer.errors import BadInput, NotFound
from neuron_explainer.models.shapes import ModelShape, check_bounds
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.resolvers.context import Context
from neuron_explainer.storage.reader import StoredExplanation


def _shape_for(ctx: Context, node: NodeId) -> ModelShape:
    shape = ctx.services.shape(node.model)
    if shape is None:
        known = sorted({*ctx.services.registry.models()} | ({ctx.services.model.name} if ctx.services.model else set()))
        raise NotFound(f"unknown model {node.model!r} (known: {', '.join(known)})", model=node.model)
    return shape


def _latent_count(ctx: Context, node: NodeId) -> int | None:
    return ctx.services.latent_count(node.autoencoder) if node.autoencoder is not None else None


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


def kind_segment(ctx: Context, model: str, kind: NodeKind, autoencoder: str | None) -> str:
    """The id segment for a kind: ``mlp_neuron``, ``attention_head``, or the autoencoder's name — the one
    given, else the only autoencoder of that kind the running model or the datasets know for ``model``."""
    if not kind.is_latent:
        if autoencoder is not None:
            raise BadInput(f"autoencoder is only for latent kinds, not {kind.name}", argument="autoencoder")
        return kind.value
    known = ctx.services.autoencoder_kinds()
    if autoencoder is not None:
        if known.get(autoencoder) is not kind:
            of_kind = sorted(name for name, k in known.items() if k is kind)
            raise BadInput(
                f"autoencoder {autoencoder!r} is not a known {kind.name} autoencoder "
                f"(known: {', '.join(of_kind) or 'none'})",
                argument="autoencoder",
            )
        return autoencoder
    loaded = ctx.services.model
    if loaded is not None and loaded.name == model and kind in loaded.autoencoders:
        return loaded.autoencoders[kind].name
    candidates = sorted(
        {d.autoencoder for d in ctx.services.registry.all() if d.model == model and d.kind is kind and d.autoencoder}
    )
    if len(candidates) == 1:
        return candidates[0]
    raise BadInput(
        f"{model} has {'no' if not candidates else 'more than one'} {kind.name} autoencoder here"
        + (f" ({', '.join(candidates)}): name one with autoencoder:" if candidates else ""),
        argument="autoencoder",
    )


def count_nodes(ctx: Context, model: str, segment: str, layer: int) -> tuple[NodeId, int]:
    """The first node of a layer (for its kind or autoencoder segment) and how many nodes that layer has."""
    first = resolve_node(ctx, f"{model}/{segment}/{layer}/0")
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


MAX_PAGE = 1000
_CURSOR_PREFIX = "node-index:"


def encode_cursor(index: int) -> str:
    """Opaque to clients (base64), so that what it holds may change without breaking them."""
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{index}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, argument: str) -> int:
    error = BadInput(f"cursor {cursor!r} is not one this server issued", argument=argument)
    if len(cursor) > 40:
        raise error
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise error from None
    digits = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise error
    return int(digits)


@dataclass(frozen=True, slots=True)
class NodePage:
    nodes: list[tuple[str, NodeId]]
    """(cursor, node), in index order."""
    has_previous_page: bool
    has_next_page: bool
    total_count: int

    @property
    def start_cursor(self) -> str | None:
        return self.nodes[0][0] if self.nodes else None

    @property
    def end_cursor(self) -> str | None:
        return self.nodes[-1][0] if self.nodes else None


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None


def node_page(
    ctx: Context, model: str, kind: NodeKind, layer: int, args: PageArgs, autoencoder: str | None = None
) -> NodePage:
    """Nodes of one kind in one layer, in index order, paged as a Relay cursor connection."""
    segment = kind_segment(ctx, model, kind, autoencoder)
    _, total = count_nodes(ctx, model, segment, layer)
    start, stop = page_bounds(total, args)
    nodes = [(encode_cursor(i), resolve_node(ctx, f"{model}/{segment}/{layer}/{i}")) for i in range(start, stop)]
    return NodePage(nodes, start > 0, stop < total, total)


def page_bounds(total: int, args: PageArgs) -> tuple[int, int]:
    """``[start, stop)`` of the Relay pagination algorithm over ``total`` items in index order: slice by
    ``after``/``before``, then keep the ``first`` of what is left, then the ``last`` of that (neither
    given: the first 50). Both page flags are then true exactly when items exist beyond the page."""
    for name, value in (("first", args.first), ("last", args.last)):
        if value is not None and not 0 <= value <= MAX_PAGE:
            raise BadInput(f"{name} must be within 0..{MAX_PAGE}, got {value}", argument=name)
    start, stop = 0, total
    if args.after is not None:
        start = min(total, decode_cursor(args.after, "after") + 1)
    if args.before is not None:
        stop = max(start, min(total, decode_cursor(args.before, "before")))
    first = 50 if args.first is None and args.last is None else args.first
    if first is not None:
        stop = min(stop, start + first)
    if args.last is not None:
        start = max(start, stop - args.last)
    return start, stop
