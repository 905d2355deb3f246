"""The root ``Query``."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers import nodes as node_resolvers
from resolvers.context import Context
from schema.datasets import Dataset, NodeConnection, NodeEdge, PageInfo
from schema.nodes import Node, node_of


@strawberry.type(description="The model this server runs (or, with --run_model False, the one it serves data for).")
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
        description="A node by id, e.g. 'gpt2-small/mlp_neuron/5/131' or 'gpt2-small/ae-resid-delta-mlp-v4/5/1234'."
    )
    def node(self, info: Info[Context, None], id: strawberry.ID) -> Node | None:
        return node_of(node_resolvers.resolve_node(info.context, str(id)))

    @strawberry.field(description="Nodes of one kind (or autoencoder name) in one layer, paged by cursor.")
    def nodes(
        self,
        info: Info[Context, None],
        model: str,
        kind: str,
        layer: int,
        first: int = 50,
        after: str | None = None,
    ) -> NodeConnection:
        first_node, total = node_resolvers.count_nodes(info.context, model, kind, layer)
        start, stop = node_resolvers.page_bounds(total, first, after)
        edges = [
            NodeEdge(
                cursor=str(i), node=node_of(node_resolvers.resolve_node(info.context, f"{model}/{kind}/{layer}/{i}"))
            )
            for i in range(start, stop)
        ]
        return NodeConnection(
            edges=edges,
            page_info=PageInfo(has_next_page=stop < total, end_cursor=edges[-1].cursor if edges else after),
            total_count=total,
        )

    @strawberry.field(description="Every dataset this server knows, in the order they are tried.")
    def datasets(self, info: Info[Context, None]) -> list[Dataset]:
        return [Dataset.of(spec) for spec in info.context.services.registry.all()]

    @strawberry.field(description="What model the server runs; the original's /model_info.")
    def model_info(self, info: Info[Context, None]) -> ModelInfo:
        services = info.context.services
        s = services.settings
        model = services.model  # the loaded model's own name, config and autoencoders when one runs
        name = model.name if model is not None else s.model_name
        mlp_ae = model.mlp_autoencoder.name if model and model.mlp_autoencoder else s.mlp_autoencoder_name
        attn_ae = model.attn_autoencoder.name if model and model.attn_autoencoder else s.attn_autoencoder_name
        shape = services.shape(name)
        return ModelInfo(
            model_name=name,
            n_layers=shape.n_layers if shape else None,
            has_mlp_autoencoder=mlp_ae is not None,
            mlp_autoencoder_name=mlp_ae,
            has_attention_autoencoder=attn_ae is not None,
            attention_autoencoder_name=attn_ae,
            running=services.engine is not None,
            d_model=shape.d_model if shape else None,
            d_mlp=shape.d_mlp if shape else None,
            n_heads=shape.n_heads if shape else None,
            n_ctx=shape.n_ctx if shape else None,
            mlp_autoencoder_latents=model.mlp_autoencoder.n_latents if model and model.mlp_autoencoder else None,
            attention_autoencoder_latents=(
                model.attn_autoencoder.n_latents if model and model.attn_autoencoder else None
            ),
        )
