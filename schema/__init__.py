"""The Strawberry schema: root types composed from one file per noun."""

from __future__ import annotations

import strawberry
from strawberry.tools import merge_types

from neuron_explainer.schema.jobs import EVENT_TYPES, JobQuery
from neuron_explainer.schema.live import LiveQuery
from neuron_explainer.schema.metrics import OperationMetrics
from neuron_explainer.schema.mutation import Mutation
from neuron_explainer.schema.nodes import AttentionHead, AutoencoderLatent, MlpNeuron
from neuron_explainer.schema.policy import EXTENSIONS, FastListExecutionContext
from neuron_explainer.schema.query import Query as NodeQuery
from neuron_explainer.schema.search import SearchQuery
from neuron_explainer.schema.subscription import Subscription

Query = merge_types("Query", (NodeQuery, JobQuery, LiveQuery, SearchQuery))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[MlpNeuron, AttentionHead, AutoencoderLatent, *EVENT_TYPES],
    # The request pipeline (schema/policy/guard.py) parses and validates from its own byte-bounded caches.
    # OperationMetrics first (outermost): it times the whole operation and reads the errors TypedErrors coded.
    extensions=[OperationMetrics, *EXTENSIONS],
    execution_context_class=FastListExecutionContext,
)

__all__ = ["schema"]
