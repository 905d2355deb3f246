"""The plain values live fields return: what to rank nodes by, a ranked node, a next-token logit.

No torch here, so the GraphQL schema can name these without importing the model stack.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from neuron_explainer.nodes import NodeId


class RankBy(enum.Enum):
    ACTIVATION = "activation"
    """The node's own value (for heads: attention write norm summed over keys)."""
    WRITE_NORM = "write_norm"
    """Activation × norm of what the node writes to the residual stream."""
    ACT_TIMES_GRAD = "act_times_grad"
    """Activation × gradient of the logit-difference loss (TDB's "estimated total effect")."""


@dataclass(frozen=True, slots=True)
class NodeScore:
    node: NodeId
    token: int
    """Token position (the query token for heads)."""
    value: float


@dataclass(frozen=True, slots=True)
class TokenLogit:
    token_id: int
    token: str
    logit: float
    probability: float
