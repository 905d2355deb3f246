"""The scalar a backward pass starts from: a loss from the logits, or a traced node recomputed from the
residual stream it reads (TDB's "reconstitution").

The forward pass keeps the residual stream at the traced node's input on the gradient path
(``hook_names.node_input``); these functions recompute the node's pre-activation from it with that
layer's LayerNorm scale detached, and the backward pass runs from the result. Only the node's own
layer is recomputed, so every upstream node's gradient is the gradient of exactly this scalar.
Ablations inside the traced node's own layer are not seen by the recomputation (as in TDB).

Worker thread only: reads the bridge's weights. Shapes: a residual ``resid`` is ``[pos, d_model]``
(one batch row), ``W_Q``/``W_K``/``W_V`` ``[head, d_model, d_head]``, ``W_O`` ``[head, d_head, d_model]``.
See ``inference/targets.py`` for the definitions.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from neuron_explainer.inference.targets import AttentionPath, LossConfig, LossKind, NodeTrace
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.nodes import NodeKind

_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def layer_norm(x: torch.Tensor, ln: Any, eps: float, detach_scale: bool) -> torch.Tensor:  # [..., d] -> [..., d]
    """GPT-2's LayerNorm with its scale ``sqrt(var + eps)`` optionally detached (a constant for autograd)."""
    centered = x - x.mean(-1, keepdim=True)
    scale = (centered.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    if detach_scale:
        scale = scale.detach()
    return centered / scale * ln.weight + ln.bias


def eps(model: LoadedModel) -> float:
    return float(getattr(model.bridge.cfg, "eps", 1e-5))


def mlp_activation(model: LoadedModel, pre: torch.Tensor) -> torch.Tensor:
    act = str(getattr(model.bridge.cfg, "act_fn", "gelu_new"))
    if act not in _TANH_GELUS:
        raise ValueError(f"tracing supports GPT-2's tanh GELU, not {act!r}")
    return F.gelu(pre, approximate="tanh")


def mlp_pre_activation(model: LoadedModel, layer: int, resid: torch.Tensor, detach: bool) -> torch.Tensor:
    """``ln_2(resid) · W_in + b_in``: ``[..., d_model] -> [..., d_mlp]``."""
    block = model.bridge.blocks[layer]
    return layer_norm(resid, block.ln2, eps(model), detach) @ block.mlp.W_in + block.mlp.b_in


def _attention_inputs(model: LoadedModel, layer: int, resid: torch.Tensor, detach: bool) -> torch.Tensor:
    return layer_norm(resid, model.bridge.blocks[layer].ln1, eps(model), detach)


def _project(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [..., d] -> [..., head, d_head]
    return torch.einsum("...d,hde->...he", x, w) + b


def attention_logit(
    model: LoadedModel,
    layer: int,
    head: int,
    query: int,
    key: int,
    resid: torch.Tensor,
    path: AttentionPath,
    detach: bool,
) -> torch.Tensor:
    """The pre-softmax logit ``q[query] · k[key] / sqrt(d_head)`` through ``path`` (Q, K or QK)."""
    attn = model.bridge.blocks[layer].attn
    x = _attention_inputs(model, layer, resid[[query, key]], detach)  # [2, d_model]
    q = x[0] @ attn.W_Q[head] + attn.b_Q[head]  # [d_head]
    k = x[1] @ attn.W_K[head] + attn.b_K[head]
    if path is AttentionPath.Q:
        k = k.detach()
    elif path is AttentionPath.K:
        q = q.detach()
    return (q * k).sum() / q.shape[-1] ** 0.5


def attention_output(model: LoadedModel, layer: int, resid: torch.Tensor, token: int, detach: bool) -> torch.Tensor:
    """The attention layer's write at ``token`` (``hook_attn_out``) recomputed from ``resid``: ``[d_model]``."""
    attn = model.bridge.blocks[layer].attn
    x = _attention_inputs(model, layer, resid[: token + 1], detach)  # [keys, d_model]
    q = _project(x[token], attn.W_Q, attn.b_Q)  # [head, d_head]
    k = _project(x, attn.W_K, attn.b_K)  # [keys, head, d_head]
    v = _project(x, attn.W_V, attn.b_V)
    probs = (torch.einsum("he,khe->hk", q, k) / q.shape[-1] ** 0.5).softmax(-1)  # [head, keys]
    z = torch.einsum("hk,khe->he", probs, v)
    return torch.einsum("he,hed->d", z, attn.W_O) + attn.b_O


def _latent_pre_activation(model: LoadedModel, trace: NodeTrace, resid: torch.Tensor, detach: bool) -> torch.Tensor:
    node = trace.node
    ae = model.autoencoder_for(node.kind)
    assert ae is not None, "validated: the latent's autoencoder is loaded"
    layer = node.layer
    if ae.location == "resid_delta_attn":
        x = attention_output(model, layer, resid, trace.token, detach)
    else:
        post = mlp_activation(model, mlp_pre_activation(model, layer, resid[trace.token], detach))  # [d_mlp]
        if ae.location == "mlp_post_act":
            x = post
        else:  # resid_delta_mlp
            mlp = model.bridge.blocks[layer].mlp
            x = post @ mlp.W_out + mlp.b_out
    return ae.layers[layer].pre_activation(x, node.index)


def pre_activation(model: LoadedModel, trace: NodeTrace, resid: torch.Tensor, detach: bool) -> torch.Tensor:
    """The traced node's pre-activation (a 0-d tensor) from the residual it reads, ``resid`` ``[pos, d_model]``."""
    node = trace.node
    if node.kind is NodeKind.MLP_NEURON:
        return mlp_pre_activation(model, node.layer, resid[trace.token], detach)[node.index]
    if node.kind is NodeKind.ATTENTION_HEAD:
        assert trace.key_token is not None and trace.path is not AttentionPath.V
        path = trace.path or AttentionPath.QK
        return attention_logit(model, node.layer, node.index, trace.token, trace.key_token, resid, path, detach)
    return _latent_pre_activation(model, trace, resid, detach)


def value_direct_effect(
    model: LoadedModel, trace: NodeTrace, resid: torch.Tensor, grad: torch.Tensor, detach: bool
) -> torch.Tensor:
    """Path V: ``A[q, k] · (v[k] · W_O[h]) · grad[q]`` for head ``h`` of the trace, gradients only through v.

    ``grad`` ``[pos, d_model]`` is the (detached) gradient of the downstream node or the loss at the
    residual stream it reads; ``resid`` the residual entering the head's layer. No output bias: the
    bias is no pair's write."""
    node = trace.node
    assert trace.key_token is not None
    layer, head, query, key = node.layer, node.index, trace.token, trace.key_token
    attn = model.bridge.blocks[layer].attn
    x = _attention_inputs(model, layer, resid[: query + 1], detach)  # [keys, d_model]
    with torch.no_grad():  # the attention probability is a constant on this path
        q = x[query].detach() @ attn.W_Q[head] + attn.b_Q[head]  # [d_head]
        k = x.detach() @ attn.W_K[head] + attn.b_K[head]  # [keys, d_head]
        prob = ((k @ q) / q.shape[-1] ** 0.5).softmax(-1)[key]
    v = x[key] @ attn.W_V[head] + attn.b_V[head]  # [d_head]
    write = prob * (v @ attn.W_O[head])  # [d_model]
    return (write * grad[query].detach()).sum()


def loss_value(
    model: LoadedModel,
    loss: LossConfig,
    logits: torch.Tensor,  # [vocab] at the last position
    hidden: torch.Tensor,  # [d_model]: the final LayerNorm's output there
) -> torch.Tensor:  # 0-d
    """The loss of ``inference/targets.py`` (TDB's ``construct_*_loss_fn``) from the last position's logits.

    Where the whole vocabulary enters the gradient, the targets' part is kept on its own path: the mean
    logit of ``LOGIT_MINUS_MEAN`` is ``hidden · mean(W_U) + mean(b_U)``, and ``PROBS`` reads the targets'
    logits from their own columns of ``W_U`` (the same numbers). Through ``logits`` alone, float32 would
    add 50,257 tiny terms onto the targets' large one in the backward matmul and lose ~1e-5 of it."""
    targets = list(loss.target_tokens)
    if loss.kind is LossKind.ZERO:
        return 0.0 * logits.sum()
    if loss.kind is LossKind.PROBS:
        w_u, b_u = model.bridge.W_U, getattr(model.bridge, "b_U", None)
        own = hidden @ w_u[:, targets] + (b_u[targets] if b_u is not None else 0.0)  # [targets]
        return torch.exp(own - torch.logsumexp(logits, dim=-1)).sum()
    value = logits[targets].mean()
    if loss.kind is LossKind.LOGIT_MINUS_MEAN:
        mean_weight, mean_bias = model.mean_unembedding
        return value - (hidden @ mean_weight + mean_bias)
    if loss.distractor_tokens:
        value = value - logits[list(loss.distractor_tokens)].mean()
    return value
