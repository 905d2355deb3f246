"""Turning a client's ``TargetInput`` into a checked ``Target``: what the prompt's backward differentiates.

Errors are ``BAD_USER_INPUT`` naming the field (``target.node``, ``target.keyToken``, ...). Following
TDB, target tokens are used only where a loss is: without a node, or by a head traced through V with
no downstream node; elsewhere they are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from neuron_explainer.errors import BadInput
from neuron_explainer.inference.targets import AttentionPath, LossKind
from neuron_explainer.resolvers.context import Context
from neuron_explainer.resolvers.nodes import resolve_node

if TYPE_CHECKING:
    from neuron_explainer.inference.targets import NodeTrace, Target
    from neuron_explainer.models.loaded_model import LoadedModel
    from neuron_explainer.nodes import NodeId


@dataclass(frozen=True, slots=True)
class TraceSpec:
    node_id: str
    token: int | None
    key_token: int | None = None
    path: AttentionPath | None = None


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A ``TargetInput`` as the client wrote it."""

    loss: LossKind | None = None
    target_tokens: tuple[str, ...] | None = None
    distractor_tokens: tuple[str, ...] | None = None
    node_id: str | None = None
    token: int | None = None
    key_token: int | None = None
    path: AttentionPath | None = None
    detach_layer_norm_scale: bool = True
    downstream: TraceSpec | None = None


def _node(ctx: Context, text: str, argument: str) -> NodeId:
    try:
        return resolve_node(ctx, text)
    except BadInput as exc:
        raise BadInput(exc.message, **{**exc.fields, "argument": argument}) from None


def _trace(ctx: Context, spec: TraceSpec, prefix: str, downstream: NodeTrace | None = None) -> NodeTrace:
    from neuron_explainer.inference.targets import NodeTrace

    node = _node(ctx, spec.node_id, f"{prefix}.node")
    if spec.token is None:
        raise BadInput(f"tracing {node} needs {prefix}.token (where to trace it from)", argument=f"{prefix}.token")
    return NodeTrace(node, spec.token, spec.key_token, spec.path, downstream)


def build_target(ctx: Context, model: LoadedModel, spec: TargetSpec, n_tokens: int) -> Target:
    from neuron_explainer.inference import live
    from neuron_explainer.inference.targets import Target
    from neuron_explainer.inference.validation import validate_target

    trace = None
    if spec.node_id is not None:
        down = _trace(ctx, spec.downstream, "target.downstream") if spec.downstream is not None else None
        trace = _trace(ctx, TraceSpec(spec.node_id, spec.token, spec.key_token, spec.path), "target", down)
    elif spec.downstream is not None:
        raise BadInput("a downstream node needs a head to trace through V (target.node)", argument="target.downstream")
    elif any(v is not None for v in (spec.token, spec.key_token, spec.path)):
        raise BadInput(
            "token, keyToken and attentionPath describe a traced node: give target.node", argument="target.node"
        )
    loss = None
    uses_loss = trace is None or (trace.path is AttentionPath.V and trace.downstream is None)
    if uses_loss and (spec.target_tokens is not None or spec.loss is not None):
        kind = spec.loss or LossKind.LOGIT_DIFF
        tokens, distractors = spec.target_tokens or (), spec.distractor_tokens or ()
        loss = live.loss_config(model, tokens, distractors, kind, argument="target.targetTokens")
    target = Target(loss, trace, spec.detach_layer_norm_scale)
    validate_target(model, target, n_tokens)
    return target
