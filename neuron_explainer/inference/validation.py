"""Checking one ``ForwardRequest`` against the running model before it may join a batch.

Everything that would fail (or silently mislead) inside a shared pass is a ``BadInput`` here, naming
the argument a client wrote (``target.keyToken``, ``ablations.fromPrompt``, ...), so a bad request fails
alone and never takes the other requests of its batch down with it.
"""

from __future__ import annotations

import math

from neuron_explainer.errors import BadInput
from neuron_explainer.inference.direct_effects import value_hooks
from neuron_explainer.inference.requests import Ablation, ForwardRequest
from neuron_explainer.inference.targets import AttentionPath, LossConfig, LossKind, NodeTrace, Target
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.shapes import check_bounds
from neuron_explainer.nodes import NodeId, NodeKind

MAX_ABS_VALUE = 1e6
"""Ablation values beyond this (or not finite) are refused: they only make every float downstream overflow."""


def validate_request(model: LoadedModel, request: ForwardRequest) -> None:
    """``BadInput`` for anything about one request that would fail (or silently mislead) in a batch."""
    n = len(request.tokens)
    if n == 0:
        raise BadInput("the prompt is empty", argument="prompt")
    if n > model.shape.n_ctx:
        raise BadInput(
            f"the prompt has {n} tokens; {model.name} reads at most {model.shape.n_ctx}",
            argument="prompt",
            tokens=n,
            limit=model.shape.n_ctx,
        )
    if any(not 0 <= t < model.vocab_size for t in request.tokens):
        raise BadInput(f"token ids must be in [0, {model.vocab_size})", argument="tokens")
    if request.needs_grad and request.target is None:
        raise BadInput("gradients were asked for without a target (give target tokens or a node)", argument="target")
    if request.target is not None:
        validate_target(model, request.target, n)
    unknown = request.directs - value_hooks(model).keys()
    if unknown:
        raise BadInput(f"no direct effects are defined at {sorted(unknown)}", hook=sorted(unknown)[0])
    for name in request.captures | request.grad_captures | request.directs:
        if not model.has_hook(name):  # a view of a model running elsewhere has the names, not the points
            raise BadInput(f"no hook {name!r} on {model.name} (is the autoencoder loaded?)", hook=name)
    for ablation in request.ablations:
        validate_ablation(model, ablation, n)


def check_node(model: LoadedModel, node: NodeId, argument: str | None = None) -> None:
    """``BadInput`` unless ``node`` exists in the running model (and its autoencoder is loaded)."""
    if node.model != model.name:
        raise BadInput(
            f"node {node} is for model {node.model}, but {model.name} is running", node=str(node), argument=argument
        )
    if node.kind.is_latent:
        ae = model.autoencoder_for(node.kind)
        if ae is None or ae.name != node.autoencoder:
            loaded = ae.name if ae is not None else "none"
            raise BadInput(
                f"autoencoder {node.autoencoder} is not loaded (loaded: {loaded})", node=str(node), argument=argument
            )
    try:
        check_bounds(node, model.shape, model.n_latents(node.kind))
    except BadInput as exc:
        if argument is None:
            raise
        raise BadInput(exc.message, argument=argument, **exc.fields) from None


def check_value(value: float, argument: str) -> None:
    if not math.isfinite(value) or abs(value) > MAX_ABS_VALUE:
        raise BadInput(
            f"{argument} must be finite and at most {MAX_ABS_VALUE:g} in size, got {value}",
            argument=argument,
            limit=MAX_ABS_VALUE,
        )


def validate_ablation(model: LoadedModel, ablation: Ablation, n_tokens: int) -> None:
    node = ablation.node
    if node.kind.is_latent and model.autoencoder_for(node.kind) is None:
        raise BadInput(f"cannot ablate {node}: no {node.kind.value} autoencoder is loaded", node=str(node))
    ae = model.autoencoder_for(node.kind)
    if ae is not None and node.autoencoder != ae.name:
        raise BadInput(f"cannot ablate {node}: the loaded autoencoder is {ae.name}", node=str(node))
    check_bounds(node, model.shape, model.n_latents(node.kind))
    bad = [p for p in ablation.positions if not 0 <= p < n_tokens]
    if bad:
        raise BadInput(
            f"ablation of {node} at token {bad[0]}: the prompt has {n_tokens} tokens",
            node=str(node),
            token=bad[0],
            argument="ablations.tokenIndices",
        )
    check_value(ablation.value, "ablations.value")
    if ablation.patch is not None:
        rows = len(ablation.positions) or n_tokens
        expected = rows * (n_tokens if node.kind is NodeKind.ATTENTION_HEAD else 1)
        if len(ablation.patch) != expected:
            raise BadInput(
                f"patch of {node} has {len(ablation.patch)} values, expected {expected}",
                node=str(node),
                argument="ablations.fromPrompt",
            )
        if not all(math.isfinite(v) and abs(v) <= MAX_ABS_VALUE for v in ablation.patch):
            raise BadInput(f"patch of {node} holds a non-finite or absurd value", argument="ablations.fromPrompt")


def validate_target(model: LoadedModel, target: Target, n_tokens: int) -> None:
    """``BadInput`` naming the ``TargetInput`` field that is wrong."""
    if target.loss is not None:
        validate_loss(model, target.loss)
    if target.trace is None:
        if target.loss is None:
            raise BadInput("a target needs a loss (target tokens) or a node to trace", argument="target")
        return
    validate_trace(model, target.trace, n_tokens, "target")
    if target.trace.path is AttentionPath.V and target.trace.downstream is None and target.loss is None:
        raise BadInput(
            "tracing a head through V without a downstream node needs the loss it acts on: give targetTokens",
            argument="target.targetTokens",
        )


def validate_loss(model: LoadedModel, loss: LossConfig) -> None:
    if loss.kind is not LossKind.ZERO and not loss.target_tokens:
        raise BadInput(f"a {loss.kind.value} loss needs at least one target token", argument="target.targetTokens")
    if loss.distractor_tokens and loss.kind is not LossKind.LOGIT_DIFF:
        raise BadInput(
            f"distractor tokens only apply to LOGIT_DIFF, not {loss.kind.name}", argument="target.distractorTokens"
        )
    for t in (*loss.target_tokens, *loss.distractor_tokens):
        if not 0 <= t < model.vocab_size:
            raise BadInput(f"loss token id {t} out of range", argument="target.targetTokens")


def validate_trace(model: LoadedModel, trace: NodeTrace, n_tokens: int, prefix: str) -> None:
    check_node(model, trace.node, argument=f"{prefix}.node")
    if not 0 <= trace.token < n_tokens:
        raise BadInput(
            f"{prefix}.token {trace.token} is past the prompt ({n_tokens} tokens)",
            argument=f"{prefix}.token",
            token=trace.token,
        )
    is_head = trace.node.kind is NodeKind.ATTENTION_HEAD
    if not is_head:
        if trace.path is not None:
            raise BadInput(
                f"an attention path applies to attention heads only, not to {trace.node}",
                argument=f"{prefix}.attentionPath",
            )
        if trace.key_token is not None:
            raise BadInput(
                f"a key token applies to attention heads only, not to {trace.node}", argument=f"{prefix}.keyToken"
            )
    else:
        if trace.key_token is None:
            raise BadInput(f"tracing head {trace.node} needs keyToken (the pair's key)", argument=f"{prefix}.keyToken")
        if not 0 <= trace.key_token <= trace.token:
            raise BadInput(
                f"{prefix}.keyToken {trace.key_token} must be within 0..{prefix}.token ({trace.token}): "
                "a query attends only to keys at or before it",
                argument=f"{prefix}.keyToken",
                token=trace.key_token,
            )
    if trace.downstream is not None:
        if trace.path is not AttentionPath.V:
            raise BadInput("a downstream node applies only to a head traced through V", argument=f"{prefix}.downstream")
        down = trace.downstream
        if down.path is AttentionPath.V or down.downstream is not None:
            raise BadInput("the downstream node cannot itself be traced through V", argument=f"{prefix}.downstream")
        validate_trace(model, down, n_tokens, f"{prefix}.downstream")
        if not writes_before(trace.node, down.node):
            raise BadInput(
                f"{down.node} does not read anything {trace.node} writes (it must sit in a later layer, or be an "
                "MLP node of the same layer)",
                argument=f"{prefix}.downstream.node",
            )


def writes_before(upstream: NodeId, downstream: NodeId) -> bool:
    """True when ``upstream``'s write reaches the residual stream ``downstream`` reads."""
    writes = hook_names.residual_order(hook_names.write_point(upstream.kind, upstream.layer))
    return writes <= hook_names.residual_order(hook_names.node_input(downstream))
