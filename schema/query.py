"""The root ``Query``."""

from __future__ import annotations

import dataclasses

import strawberry
from strawberry.types import Info

from neuron_explainer.resolvers import model as model_resolvers
from neuron_explainer.resolvers import nodes as node_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.schema.datasets import Dataset, NodeConnection, NodeEdge, PageInfo
from neuron_explainer.schema.enums import NodeKind
from neuron_explainer.schema.nodes import Node, node_of
from neuron_explainer.schema.policy.declare import per_item, plain


@strawberry.type(
    description="The model this server runs (or, with --run_model False, the one it serves data for).",
    directives=[plain()],
)
class ModelInfo:
    model_name: str
    n_layers: int | None
    has_mlp_autoencoder: bool
    mlp_autoencoder_name: str | None
    has_attention_autoencoder: bool
    attention_autoencoder_name: str | None
    running: bool = strawberry.field(description="True when live fields can run a forward pass.")
    d_model: int | None
    d_mlp: int | None
    n_heads: int | None
    n_ctx: int | None
    mlp_autoencoder_latents: int | None = strawberry.field(description="Latents of the loaded MLP autoencoder.")
    attention_autoencoder_latents: int | None = strawberry.field(
        description="Latents of the loaded attention autoencoder."
    )


@strawberry.type
class Query:
    @strawberry.field(
        description="A node by id, e.g. 'gpt2-small/mlp_neuron/5/131' or 'gpt2-small/ae-resid-delta-mlp-v4/5/1234'.",
        directives=[plain(cacheable=True)],
    )
    def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return node_of(node_resolvers.resolve_node(info.context, str(id)))

    @strawberry.field(
        description="Nodes of one kind in one layer, in index order: a Relay cursor connection (first/after "
        "forwards, last/before backwards; neither: the first 50; at most 1000 a page). Latent kinds list the "
        "autoencoder named by `autoencoder`, else the only one of that kind the server knows for the model.",
        directives=[per_item("first|last", 50, cacheable=True)],
    )
    def nodes(
        self,
        info: Info[Context, None],
        model: str,
        kind: NodeKind,
        layer: int,
        autoencoder: str | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> NodeConnection:
        args = node_resolvers.PageArgs(first=first, after=after, last=last, before=before)
        page = node_resolvers.node_page(info.context, model, kind, layer, args, autoencoder)
        return NodeConnection(
            edges=[NodeEdge(cursor=cursor, node=node_of(node)) for cursor, node in page.nodes],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=page.start_cursor,
                end_cursor=page.end_cursor,
            ),
            total_count=page.total_count,
        )

    @strawberry.field(description="Every dataset this server knows, in the order they are tried.", directives=[plain()])
    def datasets(self, info: Info[Context, None]) -> list[Dataset]:
        return [Dataset.of(spec) for spec in info.context.services.registry.all()]

    @strawberry.field(description="What model the server runs; the original's /model_info.", directives=[plain()])
    def model_info(self, info: Info[Context, None]) -> ModelInfo:
        return ModelInfo(**dataclasses.asdict(model_resolvers.model_info(info.context)))
