"""What a live field computes: building a checked ``ForwardRequest`` from user input, and reading
node values, attention rows, top nodes and top logits out of a ``ForwardResult``.

Pure functions on CPU tensors; each is cheap (well under a millisecond for one node) except
``top_nodes`` over a whole model, which a caller on the event loop should run in a thread.

Definitions (TDB's, reference §3.4):
- a neuron's or latent's activation is its value per token (``mlp.hook_post`` / latent hook);
- a head's activation is its attention probability per (query, key) pair (TDB's ``attn_qk_probs``);
  its records and ``activations`` rows hold ``attn_write_norm``: ``A[h, q, k] · ‖v[k, h] · W_O[h]‖``
  (no bias), the offline head datasets' value;
- write norm of a neuron or latent = activation · ‖its write vector‖ (signed, not |act|); of a head's
  pair, ``attn_write_norm``;
- act × grad = activation · d(target)/d(activation) (``inference/targets.py``; by default the final
  LayerNorm scale is detached, as in TDB).
Heads rank as (node, query token, key token) entries, neurons and latents as (node, token).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from neuron_explainer.activations.normalize import normalize
from neuron_explainer.errors import BadInput
from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult
from neuron_explainer.inference.targets import LossConfig, LossKind, Target
from neuron_explainer.inference.validation import check_node, validate_ablation
from neuron_explainer.inference.values import NodeScore, RankBy, TokenLogit
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
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


def loss_config(
    model: LoadedModel,
    targets: Sequence[str],
    distractors: Sequence[str] = (),
    kind: LossKind = LossKind.LOGIT_DIFF,
    argument: str = "targetTokens",
) -> LossConfig:
    """A checked loss; ``argument`` prefixes the names in errors (``targetTokens`` or ``target.targetTokens``)."""
    prefix = argument.rsplit(".", 1)[0] + "." if "." in argument else ""
    if not targets and kind is not LossKind.ZERO:
        raise BadInput(f"a {kind.name} loss needs at least one target token", argument=argument)
    if distractors and kind is not LossKind.LOGIT_DIFF:
        raise BadInput(
            f"distractor tokens only apply to LOGIT_DIFF, not {kind.name}", argument=f"{prefix}distractorTokens"
        )
    return LossConfig(
        tuple(single_token(model, t, argument) for t in targets),
        tuple(single_token(model, t, f"{prefix}distractorTokens") for t in distractors),
        kind,
    )


def make_ablation(
    model: LoadedModel,
    node: NodeId,
    positions: Sequence[int],
    value: float,
    n_tokens: int,
    patch: Sequence[float] | None = None,
) -> Ablation:
    check_node(model, node)
    ablation = Ablation(node, tuple(positions), float(value), tuple(patch) if patch is not None else None)
    validate_ablation(model, ablation, n_tokens)
    return ablation


def patch_values(result: ForwardResult, node: NodeId, positions: Sequence[int]) -> tuple[float, ...]:
    """``node``'s values at ``positions`` (all when empty) on the source prompt of a patch: per position
    for neurons and latents, the attention-probability row for heads (see ``Ablation.patch``)."""
    values = result.activations[hook_names.value_hook(node)]
    pos = list(positions) or list(range(len(result.tokens)))
    if node.kind is NodeKind.ATTENTION_HEAD:
        return tuple(values[node.index, pos, :].float().flatten().tolist())  # [head, query, key]
    return tuple(values[pos, node.index].float().tolist())  # [pos, units]


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
    target: Target | None = None,
    lm_loss: bool = False,
    logits: bool = True,
) -> ForwardRequest:
    """A request capturing every hook the given nodes need (see ``hook_names.hooks_for``); with
    ``logits=False`` (and no loss) the pass may stop after the last layer it reads."""
    captures: set[str] = set(extra_captures)
    for node in nodes:
        captures |= hook_names.hooks_for(node)
    return ForwardRequest(
        tuple(tokens), frozenset(captures), frozenset(grad_captures), tuple(ablations), target, lm_loss, logits
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


def attention_pattern(result: ForwardResult, layer: int, head: int) -> list[list[float]]:
    """Row q: the head's softmax probabilities over keys 0..q (TDB's ``attn_qk_probs``), after ablations."""
    rows = result.activations[hook_names.attn_pattern(layer)][head].float().tolist()  # [query][key]
    return [row[: q + 1] for q, row in enumerate(rows)]


def _layer_scores(model: LoadedModel, result: ForwardResult, kind: NodeKind, layer: int, by: RankBy) -> torch.Tensor:
    """[pos, units] scores of every node of ``kind`` in ``layer``; heads: [query, key, head]."""
    hook = (
        hook_names.attn_pattern(layer)
        if kind is NodeKind.ATTENTION_HEAD
        else (hook_names.mlp_post(layer) if kind is NodeKind.MLP_NEURON else hook_names.ae_latents(kind, layer))
    )
    if kind is NodeKind.ATTENTION_HEAD:
        pattern = result.activations[hook].float()  # [head, query, key]
        if by is RankBy.ACT_TIMES_GRAD:
            scores = pattern * result.grads[hook].float()
        elif by is RankBy.WRITE_NORM:
            scores = attention_write_norm(model, result, layer)
        else:
            scores = pattern
        return scores.permute(1, 2, 0)  # [query, key, head]
    if by is RankBy.ACT_TIMES_GRAD:
        return result.activations[hook].float() * result.grads[hook].float()
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
    """The ``k`` highest (or lowest) entries over all layers, optionally at one (query) token: (node,
    token) for neurons and latents, (head, query, key) pairs for heads (keys after the query excluded)."""
    if k < 1:
        raise BadInput("k must be at least 1", argument="k")
    n_tokens = len(result.tokens)
    if token is not None and not 0 <= token < n_tokens:
        raise BadInput(f"token {token} out of range: the prompt has {n_tokens} tokens", argument="token")
    ae = model.autoencoder_for(kind) if kind.is_latent else None
    per_layer = [_layer_scores(model, result, kind, layer, by) for layer in range(model.shape.n_layers)]
    scores = torch.stack(per_layer)  # [layer, pos, units] or, for heads, [layer, query, key, head]
    heads = kind is NodeKind.ATTENTION_HEAD
    if heads:  # a query never attends to a later key: those entries are not pairs at all
        causal = torch.ones(n_tokens, n_tokens, dtype=torch.bool).tril()[None, :, :, None]
        scores = scores.masked_fill(~causal, float("-inf") if largest else float("inf"))
    if token is not None:
        scores = scores[:, token : token + 1]
    n_pairs = int(torch.isfinite(scores).sum()) if heads else scores.numel()
    values, flat = torch.topk(scores.flatten(), k=min(k, n_pairs), largest=largest)
    index = torch.unravel_index(flat, scores.shape)
    offset = token or 0
    found = []
    for i, value in enumerate(values.tolist()):
        layer, pos, unit = int(index[0][i]), int(index[1][i]) + offset, int(index[-1][i])
        key = int(index[2][i]) if heads else None
        node = NodeId(model.name, kind, layer, unit, ae.name if ae is not None else None)
        found.append(NodeScore(node, pos, float(value), key))
    return found


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
