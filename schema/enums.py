"""Enums shared by the schema: the core's own enums, registered with Strawberry (member names become values)."""

from __future__ import annotations

import strawberry

from neuron_explainer.inference.targets import AttentionPath, LossKind
from neuron_explainer.inference.values import Column, TableKind
from neuron_explainer.nodes import NodeKind
from neuron_explainer.provenance import DataSource

strawberry.enum(DataSource, name="DataSource", description="Where a value comes from.")
strawberry.enum(NodeKind, name="NodeKind", description="What kind of model component a node is.")
strawberry.enum(LossKind, name="LossKind", description="A loss of the original's, at the last position.")
strawberry.enum(AttentionPath, name="AttentionPath", description="Which side of a head a trace flows through.")
strawberry.enum(TableKind, name="NodeTableKind", description="What a node-table row is.")
strawberry.enum(Column, name="NodeTableColumn", description="One of the node table's four columns.")

__all__ = ["AttentionPath", "Column", "DataSource", "LossKind", "NodeKind", "TableKind"]
