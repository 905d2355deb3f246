"""What a live field computes: building a checked ``ForwardRequest`` from user input, and reading
node values, attention rows, top nodes and top logits out of a ``ForwardResult``.

Pure functions on CPU tensors; each is cheap (well under a millisecond for one node) except
``top_nodes`` over a whole model, which a caller on the event loop should run in a thread.

Definitions (TDB's, reference §3.4):
- a neuron's or latent's activation is its value per token (``mlp.hook_post`` / latent hook);
- a head's per-token-pair value is ``attn_write_norm``: ``A[h, q, k] · ‖v[k, h] · W_O[h]‖`` (no bias);
- write norm of a neuron or latent = activation · ‖its write vector‖ (signed, not |act|);
- act × grad = activation · d(loss)/d(activation), the loss being ``logit_diff`` at the last token.
For ranking, a head at query token q scores the sum over keys of its pair values (write norm, or
``A · dA`` for act × grad), so heads and neurons both rank as (node, token) entries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from neuron_explainer.activations.normalize import normalize
from neuron_explainer.errors import BadInput
from neuron_explainer.inference.forward import validate_ablation
from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult, LossConfig
from neuron_explainer.inference.values import NodeScore, RankBy, TokenLogit
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.shapes import check_bounds
from neuron_explainer.models.write_norms import value_write_norms
from neuron_explainer.nodes import NodeId, NodeKind


# ---- building requests -------------------------------------------------------------------------
def check_unicode(text: str, argument: str) -> None:
    """JSON can carry lone surrogates (``"\\ud800"``) that no tokenizer can encode: ``BadInput``."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadInput(
            f"{argument} is not valid Unicode: a lone surrogate at character {exc.start}",
            argument=argument,
            position=exc.start,
        ) from None


def tokenize_prompt(model: LoadedModel, text: str) -> tuple[int, ...]:
    """The prompt's tokens (no BOS); ``BadInput`` when empty or longer than the model's context."""
    check_unicode(text, "prompt")
    tokens = tuple(model.to_tokens(text)) if text else ()
    if not tokens:
        raise BadInput("the prompt is empty", argument="prompt")
    if len(tokens) > model.shape.n_ctx:
        raise BadInput(
            f"the prompt has {len(tokens)} tokens; {model.name} reads at most {model.shape.n_ctx}",
            argument="prompt",
            tokens=len(tokens),
            limit=model.shape.n_ctx,
        )
    return tokens


def single_token(model: LoadedModel, text: str, argument: str) -> int:
    """The id of ``text`` if it is exactly one token (e.g. ``" Paris"`` with its space), else ``BadInput``."""
    check_unicode(text, argument)
    ids = model.to_tokens(text)
    if len(ids) != 1:
        raise BadInput(
            f"{argument} {text!r} is {len(ids)} tokens; each must be exactly one token (mind the leading space)",
            argument=argument,
            token=text,
            n_tokens=len(ids),
        )
    return ids[0]


def loss_config(model: LoadedModel, targets: Sequence[str], distractors: Sequence[str] = ()) -> LossConfig:
    if not targets:
        raise BadInput("a logit-difference loss needs at least one target token", argument="targetTokens")
    return LossConfig(
        tuple(single_token(model, t, "targetTokens") for t in targets),
        tuple(single_token(model, t, "distractorTokens") for t in distractors),
    )


def check_node(model: LoadedModel, node: NodeId) -> None:
    """``BadInput`` unless ``node`` exists in the running model (and its autoencoder is loaded)."""
    if node.model != model.name:
        raise BadInput(f"node {node} is for model {node.model}, but {model.name} is running", node=str(node))
    if node.kind.is_latent:
        ae = model.autoencoder_for(node.kind)
        if ae is None or ae.name != node.autoencoder:
            loaded = ae.name if ae is not None else "none"
            raise BadInput(f"autoencoder {node.autoencoder} is not loaded (loaded: {loaded})", node=str(node))
    check_bounds(node, model.shape, model.n_latents(node.kind))


def make_ablation(model: LoadedModel, node: NodeId, positions: Sequence[int], value: float, n_tokens: int) -> Ablation:
    check_node(model, node)
    ablation = Ablation(node, tuple(positions), float(value))
    validate_ablation(model, ablation, n_tokens)
    return ablation


def hooks_for_top_nodes(model: LoadedModel, kind: NodeKind, by: RankBy) -> tuple[frozenset[str], frozenset[str]]:
    """(captures, grad_captures) needed to rank every node of ``kind`` in every layer by ``by``."""
    layers = range(model.shape.n_layers)
    if kind.is_latent and model.autoencoder_for(kind) is None:
        raise BadInput(f"no {kind.value} autoencoder is loaded", kind=kind.value)
    if kind is NodeKind.MLP_NEURON:
        values = {hook_names.mlp_post(layer) for layer in layers}
    elif kind is NodeKind.ATTENTION_HEAD:
        values = {hook_names.attn_pattern(layer) for layer in layers}
    else:
        values = {hook_names.ae_latents(kind, layer) for layer in layers}
    captures = set(values)
    if kind is NodeKind.ATTENTION_HEAD and by is not RankBy.ACT_TIMES_GRAD:
        captures |= {hook_names.attn_v(layer) for layer in layers}
    grads = frozenset(values) if by is RankBy.ACT_TIMES_GRAD else frozenset()
    return frozenset(captures), grads


def request_for(
    tokens: Sequence[int],
    *,
    nodes: Iterable[NodeId] = (),
    extra_captures: Iterable[str] = (),
    grad_captures: Iterable[str] = (),
    ablations: Sequence[Ablation] = (),
    loss: LossConfig | None = None,
    lm_loss: bool = False,
    logits: bool = True,
) -> ForwardRequest:
    """A request capturing every hook the given nodes need (see ``hook_names.hooks_for``); with
    ``logits=False`` (and no loss) the pass may stop after the last layer it reads."""
    captures: set[str] = set(extra_captures)
    for node in nodes:
        captures |= hook_names.hooks_for(node)
    return ForwardRequest(
        tuple(tokens), frozenset(captures), frozenset(grad_captures), tuple(ablations), loss, lm_loss, logits
    )


# ---- reading results ---------------------------------------------------------------------------
def attention_write_norm(model: LoadedModel, result: ForwardResult, layer: int) -> torch.Tensor:
    """[head, query, key]: ``A[h, q, k] · ‖v[k, h] · W_O[h]‖``; zero above the diagonal."""
    pattern = result.activations[hook_names.attn_pattern(layer)].float()  # [head, query, key]
    v = result.activations[hook_names.attn_v(layer)].float()  # [key, head, d_head]
    value_norms = value_write_norms(v, model.w_o_grams[layer])  # [key, head]
    return pattern * value_norms.T[:, None, :]


def attention_rows(model: LoadedModel, result: ForwardResult, layer: int, head: int) -> list[list[float]]:
    """Row i: head ``head``'s write norm from query token i to keys 0..i (TDB's unflattened pairs)."""
    norms = attention_write_norm(model, result, layer)[head]  # [query, key]
    return [norms[i, : i + 1].tolist() for i in range(norms.shape[0])]


def node_activations(model: LoadedModel, result: ForwardResult, node: NodeId) -> list[float]:
    """Per-token values of a neuron or latent (for a head, see ``attention_rows``)."""
    if node.kind is NodeKind.ATTENTION_HEAD:
        raise ValueError("heads have per-token-pair values: use attention_rows")
    values = result.activations[hook_names.value_hook(node)]  # [pos, units]
    return values[:, node.index].float().tolist()


def _layer_scores(model: LoadedModel, result: ForwardResult, kind: NodeKind, layer: int, by: RankBy) -> torch.Tensor:
    """[pos, units] scores of every node of ``kind`` in ``layer`` (units = heads for heads)."""
    hook = (
        hook_names.attn_pattern(layer)
        if kind is NodeKind.ATTENTION_HEAD
        else (hook_names.mlp_post(layer) if kind is NodeKind.MLP_NEURON else hook_names.ae_latents(kind, layer))
    )
    if by is RankBy.ACT_TIMES_GRAD:
        act = result.activations[hook].float()
        prod = act * result.grads[hook].float()
        return prod.sum(dim=-1).T if kind is NodeKind.ATTENTION_HEAD else prod  # heads: [h,q,k] -> [q,h]
    if kind is NodeKind.ATTENTION_HEAD:
        return attention_write_norm(model, result, layer).sum(dim=-1).T  # [query, head]
    act = result.activations[hook].float()  # [pos, units]
    if by is RankBy.ACTIVATION:
        return act
    if kind is NodeKind.MLP_NEURON:
        return act * model.neuron_write_norms[layer]
    ae = model.autoencoder_for(kind)
    assert ae is not None
    return act * ae.write_norms[layer]


def top_nodes(
    model: LoadedModel,
    result: ForwardResult,
    kind: NodeKind,
    k: int,
    by: RankBy = RankBy.ACTIVATION,
    *,
    token: int | None = None,
    largest: bool = True,
) -> list[NodeScore]:
    """The ``k`` highest (or lowest) (node, token) entries over all layers, optionally at one token."""
    if k < 1:
        raise BadInput("k must be at least 1", argument="k")
    n_tokens = len(result.tokens)
    if token is not None and not 0 <= token < n_tokens:
        raise BadInput(f"token {token} out of range: the prompt has {n_tokens} tokens", argument="token")
    ae = model.autoencoder_for(kind) if kind.is_latent else None
    per_layer = [_layer_scores(model, result, kind, layer, by) for layer in range(model.shape.n_layers)]
    scores = torch.stack(per_layer)  # [layer, pos, units]
    if token is not None:
        scores = scores[:, token : token + 1]
    values, flat = torch.topk(scores.flatten(), k=min(k, scores.numel()), largest=largest)
    layers, positions, units = torch.unravel_index(flat, scores.shape)
    offset = token or 0
    return [
        NodeScore(
            NodeId(model.name, kind, int(layer), int(unit), ae.name if ae is not None else None),
            int(pos) + offset,
            float(value),
        )
        for value, layer, pos, unit in zip(values, layers, positions, units, strict=True)
    ]


def top_logits(model: LoadedModel, result: ForwardResult, k: int = 10) -> list[TokenLogit]:
    """The ``k`` most likely next tokens after the prompt, with logits and probabilities."""
    logits = result.last_logits.float()  # [vocab]
    probs = torch.softmax(logits, dim=-1)
    values, ids = torch.topk(logits, k=min(k, logits.numel()))
    names = model.to_str_tokens(ids.tolist())
    return [
        TokenLogit(int(i), name, float(v), float(probs[i]))
        for i, v, name in zip(ids.tolist(), values.tolist(), names, strict=True)
    ]


# ---- display normalization of live values ------------------------------------------------------
def normalize_live(values: Sequence[float], record_max: float | None) -> list[float]:
    """TDB's ``/derived_scalars`` rule: ``clamp(x, 0) / max_activation`` of the node's stored record, so
    a live value reads on the same scale as the dataset's top examples (and may exceed 1). Without a
    usable record (none stored, or its max is not positive) the prompt's own values set the scale,
    with the read routes' rule (``activations.normalize``)."""
    if record_max is not None and record_max > 0:
        return [max(x, 0.0) / record_max for x in values]
    return normalize([list(values)])[0]


def normalize_live_pairs(flat: Sequence[float], record_top: Sequence[Sequence[float]] = ()) -> list[float]:
    """TDB's ``/derived_attention_scalars`` rule for a head's flattened pair values: the stored record's
    top sequences join the prompt's values in the pool the max is taken over."""
    return normalize([list(flat)], pool=[list(flat), *record_top])[0]
