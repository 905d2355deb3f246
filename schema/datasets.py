"""Datasets and paged node listings."""

from __future__ import annotations

import strawberry

from neuron_explainer.schema.enums import NodeKind
from neuron_explainer.schema.nodes import Node
from neuron_explainer.schema.policy.declare import fixed, plain
from neuron_explainer.storage.datasets import DatasetSpec


@strawberry.type(
    description="A collated activation dataset: where a model's records of one node kind live.",
    directives=[plain()],
)
class Dataset:
    name: str
    model: str
    kind: NodeKind
    autoencoder: str | None
    records_path: str
    explanations_path: str | None

    @classmethod
    def of(cls, spec: DatasetSpec) -> Dataset:
        return cls(
            name=spec.name,
            model=spec.model,
            kind=spec.kind,
            autoencoder=spec.autoencoder,
            records_path=spec.records_path,
            explanations_path=spec.explanations_path,
        )


@strawberry.type(
    description="Where a page of a cursor connection lies (Relay's PageInfo).", directives=[plain(cacheable=True)]
)
class PageInfo:
    has_next_page: bool = strawberry.field(description="True when nodes exist after this page.")
    has_previous_page: bool = strawberry.field(description="True when nodes exist before this page.")
    start_cursor: str | None = strawberry.field(description="The first edge's cursor; null for an empty page.")
    end_cursor: str | None = strawberry.field(description="The last edge's cursor; null for an empty page.")


@strawberry.type(directives=[plain(cacheable=True)])
class NodeEdge:
    cursor: str = strawberry.field(description="Opaque: pass it as after or before.")
    node: Node


@strawberry.type(description="A page of nodes of one kind in one layer.", directives=[plain(cacheable=True)])
class NodeConnection:
    edges: list[NodeEdge] = strawberry.field(directives=[fixed(0, cacheable=True)])
    page_info: PageInfo
    total_count: int
