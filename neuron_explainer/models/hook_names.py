"""The one module that turns layers and ``NodeId``s into hook names; no other file builds one.

Names are TransformerBridge's (``blocks.{L}.mlp.hook_post`` ...) plus our own autoencoder hook points
(``autoencoder.{mlp|attn}.{L}.hook_latents``), which exist only while an autoencoder is inserted.
Shapes of what each hook carries, batch first:
``mlp_post`` [batch, pos, d_mlp]; ``attn_pattern`` [batch, head, query_pos, key_pos];
``attn_v`` [batch, pos, head, d_head]; ``attn_out`` / ``mlp_out`` / ``resid_*`` / ``embeddings`` /
``final_norm`` [batch, pos, d_model]; ``final_norm_scale`` [batch, pos, 1]; ``ae_latents``
[batch, pos, n_latents].
"""

from __future__ import annotations

import re

from neuron_explainer.nodes import NodeId, NodeKind


def mlp_post(layer: int) -> str:
    return f"blocks.{layer}.mlp.hook_post"


def attn_pattern(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def attn_v(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_v"


def attn_out(layer: int) -> str:
    """``resid_delta_attn`` in TDB terms: what the attention layer adds to the residual stream."""
    return f"blocks.{layer}.hook_attn_out"


def mlp_out(layer: int) -> str:
    """``resid_delta_mlp`` in TDB terms."""
    return f"blocks.{layer}.hook_mlp_out"


def resid_pre(layer: int) -> str:
    """The residual stream entering ``layer``: what its attention heads (and attention latents) read."""
    return f"blocks.{layer}.hook_resid_pre"


def resid_mid(layer: int) -> str:
    """The residual stream after ``layer``'s attention: what its MLP neurons (and MLP latents) read."""
    return f"blocks.{layer}.hook_resid_mid"


def embeddings() -> str:
    """TDB's ``resid_post_embedding``: token plus position embedding, the residual entering layer 0."""
    return resid_pre(0)


def resid_post(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_post"


def final_norm() -> str:
    """The final LayerNorm's output (after its gain and bias): the unembedding's input.

    Not ``ln_final.hook_normalized``, which the bridge fires before the gain and bias are applied."""
    return "ln_final.hook_out"


def final_norm_scale() -> str:
    """The final LayerNorm's scale ``sqrt(var + eps)``; a hook returning it detached is TDB's backward
    ablation of ``resid.ln_f.scale`` (the gradient stops there, values are unchanged)."""
    return "ln_final.hook_scale"


_AE_FAMILY = {NodeKind.MLP_AUTOENCODER_LATENT: "mlp", NodeKind.ATTENTION_AUTOENCODER_LATENT: "attn"}


def ae_latents(kind: NodeKind, layer: int) -> str:
    """Our hook point for an inserted autoencoder's latents (after encoding, before decoding)."""
    return f"autoencoder.{_AE_FAMILY[kind]}.{layer}.hook_latents"


_INPUT_LOCATIONS = {"mlp_post_act": mlp_post, "resid_delta_mlp": mlp_out, "resid_delta_attn": attn_out}
"""TDB's names for where an autoencoder reads (its "input DST")."""


def ae_input(location: str, layer: int) -> str:
    """The model hook an autoencoder reading TDB location ``location`` is inserted at."""
    try:
        return _INPUT_LOCATIONS[location](layer)
    except KeyError:
        raise ValueError(f"unknown autoencoder input location {location!r}") from None


def hooks_for(node: NodeId) -> frozenset[str]:
    """Every hook whose value is needed to compute ``node``'s per-token (or per-pair) activation.

    A head needs its pattern and values (``attn_write_norm`` = pattern × ‖v·W_O‖).
    """
    if node.kind is NodeKind.MLP_NEURON:
        return frozenset({mlp_post(node.layer)})
    if node.kind is NodeKind.ATTENTION_HEAD:
        return frozenset({attn_pattern(node.layer), attn_v(node.layer)})
    return frozenset({ae_latents(node.kind, node.layer)})


def value_hook(node: NodeId) -> str:
    """The hook whose tensor holds the node's own value: where ablations write and gradients are taken.

    For a head that is the attention pattern (TDB ablates ``attn.qk_probs[query, All, head]``).
    """
    if node.kind is NodeKind.MLP_NEURON:
        return mlp_post(node.layer)
    if node.kind is NodeKind.ATTENTION_HEAD:
        return attn_pattern(node.layer)
    return ae_latents(node.kind, node.layer)


def node_input(node: NodeId) -> str:
    """The residual stream ``node`` reads (TDB's "previous residual" of a node): a backward pass traced
    from the node starts there, and direct effects on it are writes dotted with its gradient there."""
    if node.kind in (NodeKind.ATTENTION_HEAD, NodeKind.ATTENTION_AUTOENCODER_LATENT):
        return resid_pre(node.layer)
    return resid_mid(node.layer)


def write_point(kind: NodeKind, layer: int) -> str:
    """The residual stream a node of ``kind`` in ``layer`` writes into (attention kinds: ``resid_mid``;
    MLP kinds: ``resid_post``)."""
    if kind in (NodeKind.ATTENTION_HEAD, NodeKind.ATTENTION_AUTOENCODER_LATENT):
        return resid_mid(layer)
    return resid_post(layer)


def residual_order(resid_hook: str) -> int:
    """Position of a residual-stream hook along the forward pass: ``resid_pre(L)`` 2L, ``resid_mid(L)`` 2L+1,
    ``resid_post(L)`` 2L+2 (= ``resid_pre(L+1)``)."""
    layer = layer_of(resid_hook)
    assert layer is not None, resid_hook
    if resid_hook == resid_pre(layer):
        return 2 * layer
    if resid_hook == resid_mid(layer):
        return 2 * layer + 1
    assert resid_hook == resid_post(layer), resid_hook
    return 2 * layer + 2


_LAYER = re.compile(r"^(?:blocks|autoencoder\.(?:mlp|attn))\.(\d+)\.")


def layer_of(hook: str) -> int | None:
    """The layer a hook name belongs to, or ``None`` for embedding / final hooks."""
    m = _LAYER.match(hook)
    return int(m.group(1)) if m else None


def position_dims(hook: str) -> tuple[int, ...]:
    """Which dims of a hook's value (batch dim dropped) index token positions: (query, key) for
    attention patterns/scores, else just the first."""
    if hook.endswith((".attn.hook_pattern", ".attn.hook_attn_scores")):
        return (1, 2)
    return (0,)
