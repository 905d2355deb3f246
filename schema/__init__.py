"""The Strawberry schema: root types composed from one file per noun."""

from __future__ import annotations

import strawberry
from strawberry.extensions import ParserCache, ValidationCache

from schema.errors import TypedErrors
from schema.execution import FastListExecutionContext
from schema.nodes import AttentionHead, AutoencoderLatent, MlpNeuron
from schema.query import Query
from schema.response_cache import CachedResponses

schema = strawberry.Schema(
    query=Query,
    types=[MlpNeuron, AttentionHead, AutoencoderLatent],
    # Parsing and validating a 100-node query costs ~25 ms; repeated documents skip both.
    extensions=[TypedErrors, ParserCache(maxsize=512), ValidationCache(maxsize=512), CachedResponses],  # type: ignore[list-item]
    execution_context_class=FastListExecutionContext,
)

__all__ = ["schema"]
