"""The plain values live fields return: what to rank nodes by, a ranked node, a next-token logit.

No torch here, so the GraphQL schema can name these without importing the model stack.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from neuron_explainer.nodes import NodeId


class RankBy(enum.Enum):
    ACTIVATION = "activation"
    """The node's own value; for heads the attention probability of a (query, key) pair (as TDB)."""
    WRITE_NORM = "write_norm"
    """Activation × norm of what the node writes to the residual stream (heads: per pair)."""
    ACT_TIMES_GRAD = "act_times_grad"
    """Activation × gradient of the target (TDB's "estimated total effect")."""


@dataclass(frozen=True, slots=True)
class NodeScore:
    node: NodeId
    token: int
    """Token position (the query token for heads)."""
    value: float
    key_token: int | None = None
    """Heads: the key token of the pair."""


@dataclass(frozen=True, slots=True)
class TokenLogit:
    token_id: int
    token: str
    logit: float
    probability: float


class Column(enum.Enum):
    """The node table's four columns, in TDB's group order (the order its picks are unioned in)."""

    WRITE_NORM = "write_norm"
    """Activation × norm of the node's write to the residual stream (TDB's "write magnitude")."""
    ACT_TIMES_GRAD = "act_times_grad"
    """Activation × gradient of the target (TDB's "estimated total effect")."""
    DIRECT_EFFECT = "direct_effect"
    """The node's write · the target's gradient at the residual stream the target reads."""
    ACTIVATION = "activation"
    """The node's value (a head's attention probability; 1 for an embedding)."""


class TableKind(enum.Enum):
    """What a node-table row is: a model component, or TDB's embedding pseudo-node of a token."""

    EMBEDDING = "embedding"
    """A token's embedding (token plus position): TDB's ``resid_post_embedding`` pseudo-node."""
    MLP_NEURON = "mlp_neuron"
    """One MLP neuron at one token."""
    ATTENTION_HEAD = "attention_head"
    """One head at one (query, key) pair."""
    MLP_AUTOENCODER_LATENT = "mlp_autoencoder_latent"
    """A latent of the loaded MLP autoencoder at one token."""
    ATTENTION_AUTOENCODER_LATENT = "attention_autoencoder_latent"
    """A latent of the loaded attention autoencoder at one token."""


@dataclass(frozen=True, slots=True)
class TableEntry:
    """Which node-table row: ``node`` is ``None`` for an embedding (the token is the row)."""

    kind: TableKind
    node: NodeId | None
    token: int
    """Token position (the query token for heads)."""
    key_token: int | None = None
    """Heads: the key token of the pair."""


@dataclass(frozen=True, slots=True)
class NodeValues:
    """A node-table row's four columns (definitions in ``inference/node_table.py``)."""

    activation: float
    write_norm: float
    act_times_grad: float
    direct_effect: float


@dataclass(frozen=True, slots=True)
class TokenSums:
    """One token's column summed per component (TDB's ``componentSumsForTokenDisplay``)."""

    token: int
    embedding: float
    """The token's embedding pseudo-node."""
    mlp: float
    """Every MLP neuron of every layer at this token."""
    attention_from: float
    """Every head's pairs with this token as the query (what attention brought to it)."""
    attention_to: float
    """Every head's pairs with this token as the key (what attention took from it)."""


@dataclass(frozen=True, slots=True)
class TokenPair:
    token: int
    """The query token."""
    key_token: int
    value: float


@dataclass(frozen=True, slots=True)
class TokenScore:
    token_id: int
    token: str
    value: float
