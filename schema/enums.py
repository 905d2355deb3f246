"""Enums shared by the schema: the core's enums, exposed as-is (member names become GraphQL values)."""

from __future__ import annotations

import strawberry

from neuron_explainer.nodes import NodeKind as CoreNodeKind
from neuron_explainer.provenance import DataSource as CoreDataSource

DataSource = strawberry.enum(CoreDataSource, name="DataSource", description="Where a value comes from.")
NodeKind = strawberry.enum(CoreNodeKind, name="NodeKind", description="What kind of model component a node is.")
