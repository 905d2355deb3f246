"""Direct effects: what each node writes, dotted with the target's gradient at the residual it reads.

TDB's ``*_write_to_final_residual_grad`` scalars (reference §3.4, ``direct_effects.py`` in its source):
the gradient ``g`` ``[pos, d_model]`` of the target is taken at the residual stream the target reads —
the final residual (before ``ln_final``) for a loss, the traced node's input for a node — and each
node's write is projected on it:

- MLP neuron ``n`` at token t: ``W_out[n] · g[t]`` per unit of activation;
- attention head ``h``, pair (q, k): ``(v[k, h] · W_O[h]) · g[q]`` per unit of attention probability;
- autoencoder latent ``z``: its decoder column (pushed through ``W_out`` for ``mlp_post_act``
  autoencoders) ``· g[t]``;
- token embedding at t: ``resid_post_embedding[t] · g[t]`` (read from the captured embedding).

Times the activation, that is the node's direct effect. A node whose write lands after the residual
the target reads has no direct effect: its projection is zero. Worker thread only (reads weights);
computed once per pass, on the pass's device.
"""

from __future__ import annotations

import torch

from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.nodes import NodeKind


def value_hooks(model: LoadedModel) -> dict[str, tuple[NodeKind | None, int]]:
    """Every value hook a direct effect can be asked for, with the kind and layer of its nodes (the
    embeddings: kind ``None``, layer 0)."""
    found: dict[str, tuple[NodeKind | None, int]] = {hook_names.embeddings(): (None, 0)}
    for layer in range(model.shape.n_layers):
        found[hook_names.mlp_post(layer)] = (NodeKind.MLP_NEURON, layer)
        found[hook_names.attn_pattern(layer)] = (NodeKind.ATTENTION_HEAD, layer)
        for kind in model.autoencoders:
            found[hook_names.ae_latents(kind, layer)] = (kind, layer)
    return found


def projections(
    model: LoadedModel,
    hooks: frozenset[str],
    grad: torch.Tensor,  # [pos, d_model], detached
    read: str,
    values: dict[str, torch.Tensor],  # attn_v(L) -> [pos, head, d_head] for the heads' layers asked
) -> dict[str, torch.Tensor]:
    """Per asked value hook, the write of one unit of each node dotted with ``grad`` (zero when the node
    writes after ``read``): ``mlp_post`` ``[pos, d_mlp]``, ``attn_pattern`` ``[head, query, key]``,
    ``ae_latents`` ``[pos, n_latents]``; for ``embeddings`` the gradient itself ``[pos, d_model]`` (the
    embedding is its own write)."""
    kinds = value_hooks(model)
    read_at = hook_names.residual_order(read)
    # A loss's gradient lives at the last token only, a traced node's at the one or two it reads:
    # project just those rows (1/64 of the work on a 64-token prompt), the rest are zero.
    live = grad.ne(0).any(dim=-1).nonzero().flatten()  # [rows]
    g = grad[live]  # [rows, d_model]
    out: dict[str, torch.Tensor] = {}
    for hook in sorted(hooks):
        kind, layer = kinds[hook]
        block = model.bridge.blocks[layer]
        if kind is None:
            out[hook] = grad.detach()
            continue
        n = grad.shape[0]
        if kind is NodeKind.ATTENTION_HEAD:
            v = values[hook_names.attn_v(layer)]  # [key, head, d_head]
            projected = torch.zeros(v.shape[1], n, n, dtype=grad.dtype, device=grad.device)  # [head, query, key]
        else:
            width = model.shape.d_mlp if kind is NodeKind.MLP_NEURON else model.n_latents(kind)
            projected = torch.zeros(n, int(width or 0), dtype=grad.dtype, device=grad.device)  # [pos, units]
        if hook_names.residual_order(hook_names.write_point(kind, layer)) > read_at or live.numel() == 0:
            out[hook] = projected
            continue
        if kind is NodeKind.MLP_NEURON:
            projected[live] = g @ block.mlp.W_out.T
        elif kind is NodeKind.ATTENTION_HEAD:
            through_o = torch.einsum("hed,qd->qhe", block.attn.W_O, g)  # [rows, head, d_head]
            projected[:, live] = torch.einsum("khe,qhe->hqk", v, through_o)
        else:
            ae = model.autoencoder_for(kind)
            assert ae is not None
            into = g @ block.mlp.W_out.T if ae.location == "mlp_post_act" else g  # [rows, d_input]
            projected[live] = into @ ae.layers[layer].decoder_weight
        out[hook] = projected.detach()
    return out
