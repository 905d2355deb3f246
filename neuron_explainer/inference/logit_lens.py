"""The weight-based logit lens of one node: which output tokens it upvotes, which input tokens upvote it.

TDB's neuron-viewer definitions (its ``logitLens.tsx`` pane over ``TokenWriteConverter`` and
``VOCAB_TOKEN_WRITE_TO_INPUT_DIRECTION``):

- **Output tokens** (neurons and latents): the node's write at activation 1 — ``W_out[n]``, or a latent's
  decoder column (pushed through ``W_out`` for ``mlp_post_act`` autoencoders) — through the unembedding
  with the final LayerNorm's gain, ``(write ⊙ γ_f) · W_U``, minus its mean over the vocabulary (logits
  are invariant to a constant). Heads have no single write direction (TDB shows none).
- **Input tokens** (neurons and MLP latents): every token embedding alone, taken as the residual stream,
  through the node's own layer: a neuron's pre-activation ``ln_2(E[t]) · W_in[:, n] + b_in[n]``; an
  MLP latent's encoder pre-activation of its input location computed from ``E[t]``.
- **Input tokens of a head's Q or K** (disabled in TDB's UI, defined by its ``TokenReadConverter``): on
  TDB's one-token dummy prompt ``"a"``, the gradient of the head's attention logit with respect to the
  residual stream entering its layer, through the query (or key) side only with the LayerNorm scale
  detached, read against every token embedding: ``E · ∂logit/∂resid``.

TDB also hides a fixed list of the rarest GPT-2 tokens from these lists; here every token takes part.
Scores are full vocabulary vectors (so any k reuses one computation); they need the model's weights
and run where the model lives (``InferenceBackend.call``).
"""

from __future__ import annotations

import torch

from neuron_explainer.errors import BadInput
from neuron_explainer.inference import trace as tracing
from neuron_explainer.inference.forward import run_batch
from neuron_explainer.inference.requests import ForwardRequest
from neuron_explainer.inference.targets import AttentionPath
from neuron_explainer.inference.values import TokenScore
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.nodes import NodeId, NodeKind

DUMMY_PROMPT = "a"
_CHUNK = 4096
"""Vocabulary rows pushed through a layer at once (a full [vocab, d_mlp] intermediate is 600 MB for GPT-2)."""


def _write(model: LoadedModel, node: NodeId) -> torch.Tensor:  # [d_model]
    block = model.bridge.blocks[node.layer]
    if node.kind is NodeKind.MLP_NEURON:
        return block.mlp.W_out[node.index]
    if node.kind is NodeKind.ATTENTION_HEAD:
        raise BadInput(
            f"{node}: an attention head has no single write direction, so no output tokens (as in TDB); "
            "ask an attention-autoencoder latent, or inputTokens",
            argument="id",
        )
    ae = model.autoencoder_for(node.kind)
    assert ae is not None
    column = ae.layers[node.layer].decoder_weight[:, node.index]  # [d_input]
    return column @ block.mlp.W_out if ae.location == "mlp_post_act" else column


def output_token_scores(model: LoadedModel, node: NodeId) -> torch.Tensor:  # [vocab], on the CPU
    with torch.inference_mode():
        write = _write(model, node) * model.bridge.ln_final.weight
        scores = write @ model.bridge.W_U
        return (scores - scores.mean()).float().cpu()


def _embedding_through_layer(model: LoadedModel, node: NodeId, embeddings: torch.Tensor) -> torch.Tensor:  # [rows]
    if node.kind is NodeKind.MLP_NEURON:  # one column of W_in: a latent needs every neuron, a neuron itself
        mlp = model.bridge.blocks[node.layer].mlp
        normed = tracing.layer_norm(embeddings, model.bridge.blocks[node.layer].ln2, tracing.eps(model), True)
        return normed @ mlp.W_in[:, node.index] + mlp.b_in[node.index]
    pre = tracing.mlp_pre_activation(model, node.layer, embeddings, detach=True)  # [rows, d_mlp]
    ae = model.autoencoder_for(node.kind)
    assert ae is not None
    x = tracing.mlp_activation(model, pre)
    if ae.location == "resid_delta_mlp":
        mlp = model.bridge.blocks[node.layer].mlp
        x = x @ mlp.W_out + mlp.b_out
    return ae.layers[node.layer].pre_activation(x, node.index)


def _head_read_direction(model: LoadedModel, node: NodeId, path: AttentionPath) -> torch.Tensor:  # [d_model]
    tokens = tuple(model.to_tokens(DUMMY_PROMPT))
    hook = hook_names.resid_pre(node.layer)
    resid = run_batch(model, [ForwardRequest(tokens, frozenset({hook}), logits=False)])[0].activations[hook]
    with torch.enable_grad():
        x = resid.to(model.device).detach().requires_grad_()  # [pos, d_model]
        last = x.shape[0] - 1
        logit = tracing.attention_logit(model, node.layer, node.index, last, last, x, path, detach=True)
        (grad,) = torch.autograd.grad(logit, x)
    return grad[last]


def input_token_scores(model: LoadedModel, node: NodeId, path: AttentionPath | None = None) -> torch.Tensor:
    """``[vocab]`` on the CPU; ``path`` (Q or K, default Q) for heads only."""
    if node.kind is NodeKind.ATTENTION_AUTOENCODER_LATENT:
        raise BadInput(f"{node}: input tokens are defined for MLP neurons, MLP latents and heads", argument="id")
    embeddings = model.bridge.W_E  # [vocab, d_model]
    if node.kind is NodeKind.ATTENTION_HEAD:
        chosen = path or AttentionPath.Q
        if chosen not in (AttentionPath.Q, AttentionPath.K):
            raise BadInput("a head's input tokens read its Q or K side", argument="path")
        direction = _head_read_direction(model, node, chosen)
        with torch.inference_mode():
            return (embeddings @ direction).float().cpu()
    if path is not None:
        raise BadInput("path applies to attention heads only", argument="path")
    with torch.inference_mode():
        parts = [
            _embedding_through_layer(model, node, embeddings[i : i + _CHUNK]) for i in range(0, len(embeddings), _CHUNK)
        ]
        return torch.cat(parts).float().cpu()


def top_tokens(model: LoadedModel, scores: torch.Tensor, k: int, lowest: bool = False) -> list[TokenScore]:
    top = torch.topk(scores, k=min(k, scores.numel()), largest=not lowest)
    ids = top.indices.tolist()
    names = model.to_str_tokens(ids)
    return [TokenScore(i, name, float(v)) for i, name, v in zip(ids, names, top.values.tolist(), strict=True)]
