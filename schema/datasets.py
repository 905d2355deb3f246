"""Datasets and paged node listings."""

from __future__ import annotations

import strawberry

from neuron_explainer.storage.datasets import DatasetSpec
from schema.enums import NodeKind
from schema.nodes import Node


@strawberry.type(description="A collated activation dataset: where a model's records of one node kind live.")
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


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class NodeEdge:
    cursor: str
    node: Node


@strawberry.type(description="A page of nodes of one kind in one layer (cursor = the node index).")
class NodeConnection:
    edges: list[NodeEdge]
    page_info: PageInfo
    total_count: int
