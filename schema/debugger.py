"""The debugger's types: what a backward pass differentiates (``TargetInput``), node-table rows, per-token
sums, token pairs and logit-lens tokens. Definitions are the original TDB's (README, "Live inference")."""

from __future__ import annotations

from typing import TypedDict

import strawberry

from neuron_explainer.inference.values import NodeValues as CoreNodeValues
from neuron_explainer.inference.values import TableEntry, TokenPair, TokenSums
from neuron_explainer.resolvers.targets import TargetSpec, TraceSpec
from neuron_explainer.schema.enums import AttentionPath, LossKind, TableKind
from neuron_explainer.schema.nodes import Node, node_of
from neuron_explainer.schema.policy.declare import plain


@strawberry.input(description="A downstream node for a head traced through V: the direct effect is taken on it.")
class DownstreamTraceInput:
    node: strawberry.ID
    token: int
    key_token: int | None = strawberry.field(default=None, description="Heads: the pair's key token.")
    attention_path: AttentionPath | None = strawberry.field(default=None, description="Heads: Q, K or QK (not V).")


@strawberry.input(
    description="What the prompt's backward pass differentiates. Without node: the loss (default LOGIT_DIFF of "
    "targetTokens vs distractorTokens at the last position). With node: that node's pre-activation at token, "
    "recomputed from the residual stream it reads with that layer's LayerNorm scale detached (TDB's traced "
    "upstream node); for a head, the attention logit of the (token, keyToken) pair through attentionPath "
    "(default QK). Path V differentiates the head's direct effect on downstream (or, without one, on the loss of "
    "targetTokens) with Q and K detached. Target tokens are ignored when a node is traced through Q, K or QK."
)
class TargetInput:
    loss: LossKind | None = strawberry.field(default=None, description="Default LOGIT_DIFF.")
    target_tokens: list[str] | None = strawberry.field(default=None, description="Each exactly one token.")
    distractor_tokens: list[str] | None = strawberry.field(default=None, description="LOGIT_DIFF only.")
    node: strawberry.ID | None = None
    token: int | None = strawberry.field(default=None, description="Where the node is traced (a head: its query).")
    key_token: int | None = strawberry.field(default=None, description="Heads: the pair's key token, <= token.")
    attention_path: AttentionPath | None = None
    detach_layer_norm_scale: bool = strawberry.field(
        default=True,
        description="Detach the LayerNorm scale the target is computed through (the final one for a loss, the traced "
        "layer's for a node), as TDB always does. False: differentiate through it too.",
    )
    downstream: DownstreamTraceInput | None = None

    def spec(self) -> TargetSpec:
        down = self.downstream
        return TargetSpec(
            loss=self.loss,
            target_tokens=tuple(self.target_tokens) if self.target_tokens is not None else None,
            distractor_tokens=tuple(self.distractor_tokens) if self.distractor_tokens is not None else None,
            node_id=str(self.node) if self.node is not None else None,
            token=self.token,
            key_token=self.key_token,
            path=self.attention_path,
            detach_layer_norm_scale=self.detach_layer_norm_scale,
            downstream=TraceSpec(str(down.node), down.token, down.key_token, down.attention_path) if down else None,
        )


# TDB's four columns, one meaning wherever they appear (a row, and each side of a comparison).
COLUMNS = {
    "activation": "Post-activation; a head's attention probability of the pair; 1 for an embedding.",
    "write_norm": "Activation x norm of the node's write to the residual stream.",
    "act_times_grad": "Activation x gradient of the target (estimated total effect).",
    "direct_effect": "The node's write dotted with the target's gradient at the residual stream the target reads.",
}


class _Values(TypedDict):
    activation: float
    write_norm: float
    act_times_grad: float
    direct_effect: float


def _value_fields(v: CoreNodeValues) -> _Values:
    return _Values(
        activation=v.activation, write_norm=v.write_norm, act_times_grad=v.act_times_grad, direct_effect=v.direct_effect
    )


@strawberry.type(description="A node-table row's four columns.", directives=[plain()])
class NodeValues:
    activation: float = strawberry.field(description=COLUMNS["activation"])
    write_norm: float = strawberry.field(description=COLUMNS["write_norm"])
    act_times_grad: float = strawberry.field(description=COLUMNS["act_times_grad"])
    direct_effect: float = strawberry.field(description=COLUMNS["direct_effect"])

    @classmethod
    def of(cls, v: CoreNodeValues) -> NodeValues:
        return cls(**_value_fields(v))


class _Entry(TypedDict):
    kind: TableKind
    node: Node | None
    token: int
    key_token: int | None


def _entry_fields(e: TableEntry) -> _Entry:
    node = node_of(e.node) if e.node is not None else None
    return _Entry(kind=e.kind, node=node, token=e.token, key_token=e.key_token)


@strawberry.type(
    description="One node-table row: a node at a token (a head at a (query, key) pair).", directives=[plain()]
)
class NodeTableRow:
    kind: TableKind
    node: Node | None = strawberry.field(description="Null for an EMBEDDING row (the token itself is the row).")
    token: int = strawberry.field(description="Token position; the query token for heads.")
    key_token: int | None = strawberry.field(description="Heads: the key token of the pair.")
    activation: float = strawberry.field(description=COLUMNS["activation"])
    write_norm: float = strawberry.field(description=COLUMNS["write_norm"])
    act_times_grad: float = strawberry.field(description=COLUMNS["act_times_grad"])
    direct_effect: float = strawberry.field(description=COLUMNS["direct_effect"])

    @classmethod
    def of(cls, e: TableEntry, v: CoreNodeValues) -> NodeTableRow:
        return cls(**_entry_fields(e), **_value_fields(v))


@strawberry.type(
    description="A row of the two-condition table: both conditions' values and right minus left.",
    directives=[plain()],
)
class NodeTableComparisonRow:
    kind: TableKind
    node: Node | None = strawberry.field(description="Null for an EMBEDDING row.")
    token: int
    key_token: int | None
    left: NodeValues = strawberry.field(description="This prompt's values.")
    right: NodeValues = strawberry.field(description="The compared condition's values.")
    difference: NodeValues = strawberry.field(description="right - left.")

    @classmethod
    def of(
        cls, e: TableEntry, left: CoreNodeValues, right: CoreNodeValues, diff: CoreNodeValues
    ) -> NodeTableComparisonRow:
        return cls(
            **_entry_fields(e),
            left=NodeValues.of(left),
            right=NodeValues.of(right),
            difference=NodeValues.of(diff),
        )


@strawberry.type(
    description="One token's column summed per component (TDB's component sums for token display).",
    directives=[plain()],
)
class TokenComponentSums:
    token: int
    embedding: float
    mlp: float = strawberry.field(description="Every MLP neuron of every layer at this token.")
    attention_from: float = strawberry.field(description="Every head's pairs with this token as the query.")
    attention_to: float = strawberry.field(description="Every head's pairs with this token as the key.")

    @classmethod
    def of(cls, s: TokenSums) -> TokenComponentSums:
        return cls(
            token=s.token,
            embedding=s.embedding,
            mlp=s.mlp,
            attention_from=s.attention_from,
            attention_to=s.attention_to,
        )


@strawberry.type(
    description="A (query, key) token pair and a value summed over every head of every layer.", directives=[plain()]
)
class TokenPairValue:
    token: int = strawberry.field(description="The query token.")
    key_token: int
    value: float

    @classmethod
    def of(cls, p: TokenPair) -> TokenPairValue:
        return cls(token=p.token, key_token=p.key_token, value=p.value)
