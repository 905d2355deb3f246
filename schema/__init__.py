"""The Strawberry schema: root types composed from one file per noun."""

from __future__ import annotations

import strawberry

from schema.errors import TypedErrors
from schema.nodes import AttentionHead, AutoencoderLatent, MlpNeuron
from schema.query import Query

schema = strawberry.Schema(
    query=Query,
    types=[MlpNeuron, AttentionHead, AutoencoderLatent],
    extensions=[TypedErrors],
)

__all__ = ["schema"]
