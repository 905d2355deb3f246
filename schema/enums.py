"""Enums shared by the schema: the core's own enums, registered with Strawberry (member names become values)."""

from __future__ import annotations

import strawberry

from neuron_explainer.nodes import NodeKind
from neuron_explainer.provenance import DataSource

strawberry.enum(DataSource, name="DataSource", description="Where a value comes from.")
strawberry.enum(NodeKind, name="NodeKind", description="What kind of model component a node is.")

__all__ = ["DataSource", "NodeKind"]
