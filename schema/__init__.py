"""The Strawberry schema: root types composed from one file per noun."""

from __future__ import annotations

import strawberry
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.tools import merge_types

from schema.errors import TypedErrors
from schema.execution import FastListExecutionContext
from schema.guard import RequestGuard
from schema.jobs import EVENT_TYPES, JobQuery
from schema.live import LiveQuery
from schema.mutation import Mutation
from schema.nodes import AttentionHead, AutoencoderLatent, MlpNeuron
from schema.query import Query as NodeQuery
from schema.response_cache import CachedResponses
from schema.subscription import Subscription

Query = merge_types("Query", (NodeQuery, JobQuery, LiveQuery))

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    types=[MlpNeuron, AttentionHead, AutoencoderLatent, *EVENT_TYPES],
    # Parsing and validating a 100-node query costs ~25 ms; repeated documents skip both.
    # RequestGuard (auth, limits, cost) after ValidationCache: it reads the validation result.
    extensions=[
        TypedErrors,
        ParserCache(maxsize=512),  # type: ignore[list-item]
        ValidationCache(maxsize=512),  # type: ignore[list-item]
        RequestGuard,
        CachedResponses,
    ],
    execution_context_class=FastListExecutionContext,
)

__all__ = ["schema"]
