"""Model and autoencoder shapes: the bounds a node id is checked against before any blob is read.

Known without loading a model, so a server running with ``--run_model False`` still answers
"layer 12 out of range" instead of a blob miss.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuron_explainer.errors import BadInput
from neuron_explainer.nodes import NodeId, NodeKind


@dataclass(frozen=True, slots=True)
class ModelShape:
    name: str
    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_ctx: int


KNOWN_SHAPES: dict[str, ModelShape] = {
    s.name: s
    for s in (
        ModelShape("gpt2-small", n_layers=12, d_model=768, d_mlp=3072, n_heads=12, n_ctx=1024),
        ModelShape("gpt2-medium", n_layers=24, d_model=1024, d_mlp=4096, n_heads=16, n_ctx=1024),
        ModelShape("gpt2-large", n_layers=36, d_model=1280, d_mlp=5120, n_heads=20, n_ctx=1024),
        ModelShape("gpt2-xl", n_layers=48, d_model=1600, d_mlp=6400, n_heads=25, n_ctx=1024),
        ModelShape("tiny-gpt2", n_layers=2, d_model=64, d_mlp=256, n_heads=4, n_ctx=128),
    )
}


@dataclass(frozen=True, slots=True)
class AutoencoderShape:
    """One family of per-layer sparse autoencoders (one state dict per layer).

    ``n_latents`` is the trained width. A model loaded with ``omit_dead_latents`` (as the original
    server does) exposes fewer: pass the loaded count to ``check_bounds`` when a model runs.
    """

    name: str
    model: str
    kind: NodeKind
    n_latents: int


KNOWN_AUTOENCODERS: dict[str, AutoencoderShape] = {
    a.name: a
    for a in (
        AutoencoderShape("ae-mlp-post-act-v1", "gpt2-small", NodeKind.MLP_AUTOENCODER_LATENT, 32768),
        AutoencoderShape("ae-resid-delta-mlp-v1", "gpt2-small", NodeKind.MLP_AUTOENCODER_LATENT, 32768),
        AutoencoderShape("ae-mlp-post-act-v4", "gpt2-small", NodeKind.MLP_AUTOENCODER_LATENT, 32768),
        AutoencoderShape("ae-resid-delta-mlp-v4", "gpt2-small", NodeKind.MLP_AUTOENCODER_LATENT, 32768),
        AutoencoderShape("ae-resid-delta-attn-v4", "gpt2-small", NodeKind.ATTENTION_AUTOENCODER_LATENT, 10240),
        AutoencoderShape("ae-tiny-mlp", "tiny-gpt2", NodeKind.MLP_AUTOENCODER_LATENT, 512),
        AutoencoderShape("ae-tiny-attn", "tiny-gpt2", NodeKind.ATTENTION_AUTOENCODER_LATENT, 256),
    )
}

AUTOENCODER_LATENTS: dict[str, int] = {a.name: a.n_latents for a in KNOWN_AUTOENCODERS.values()}
AUTOENCODER_KINDS: dict[str, NodeKind] = {a.name: a.kind for a in KNOWN_AUTOENCODERS.values()}


def check_bounds(node: NodeId, shape: ModelShape, n_latents: int | None = None) -> None:
    """Raise ``BadInput`` naming the violated bound.

    E.g. "layer 12 out of range: gpt2-small has layers 0..11".

    Latent indices are checked against ``n_latents`` if given, else the known width of the node's
    autoencoder; an autoencoder we know nothing about (a user's own) has its index left unchecked.
    """
    node_text = str(node)
    if node.model != shape.name:
        raise BadInput(f"node {node_text} is for model {node.model!r}, not {shape.name!r}", node=node_text)
    if not 0 <= node.layer < shape.n_layers:
        raise BadInput(
            f"layer {node.layer} out of range: {shape.name} has layers 0..{shape.n_layers - 1}",
            node=node_text,
            bound="layer",
            limit=shape.n_layers,
        )
    limit: int | None
    if node.kind is NodeKind.MLP_NEURON:
        limit, what = shape.d_mlp, "MLP neurons"
    elif node.kind is NodeKind.ATTENTION_HEAD:
        limit, what = shape.n_heads, "attention heads"
    else:
        known = KNOWN_AUTOENCODERS.get(node.autoencoder or "")
        if known is not None and known.model != shape.name:
            raise BadInput(f"autoencoder {known.name} belongs to {known.model}, not {shape.name}", node=node_text)
        limit = n_latents if n_latents is not None else (known.n_latents if known else None)
        what = f"{node.autoencoder} latents"
    if limit is not None and not 0 <= node.index < limit:
        raise BadInput(
            f"index {node.index} out of range: {shape.name} has {what} 0..{limit - 1}",
            node=node_text,
            bound="index",
            limit=limit,
        )
