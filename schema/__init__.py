"""The Strawberry schema: root types composed from one file per noun."""

from __future__ import annotations

import strawberry

from schema.errors import TypedErrors
from schema.execution import FastListExecutionContext
from schema.response_cache import CachedResponses
from schema.nodes import AttentionHead, AutoencoderLatent, MlpNeuron
from schema.query import Query

schema = strawberry.Schema(
    query=Query,
    types=[MlpNeuron, AttentionHead, AutoencoderLatent],
    extensions=[TypedErrors, CachedResponses],
    execution_context_class=FastListExecutionContext,
)

__all__ = ["schema"]
