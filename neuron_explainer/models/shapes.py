"""Model sizes and node bounds, known without loading a model.

Minimal version written by Stream C (inference) because Stream B's ``shapes.py`` had not landed yet;
the names follow CONTRACTS.md, so B's fuller file can replace this one unchanged.
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
    "gpt2-small": ModelShape("gpt2-small", 12, 768, 3072, 12, 1024),
    "gpt2-medium": ModelShape("gpt2-medium", 24, 1024, 4096, 16, 1024),
    "gpt2-large": ModelShape("gpt2-large", 36, 1280, 5120, 20, 1024),
    "gpt2-xl": ModelShape("gpt2-xl", 48, 1600, 6400, 25, 1024),
    "tiny-gpt2": ModelShape("tiny-gpt2", 2, 64, 256, 4, 128),
}

AUTOENCODER_LATENTS: dict[str, int] = {
    "ae-mlp-post-act-v1": 32768,
    "ae-resid-delta-mlp-v1": 32768,
    "ae-mlp-post-act-v4": 32768,
    "ae-resid-delta-mlp-v4": 32768,
    "ae-resid-delta-attn-v4": 32768,
}
"""Nominal latent counts of the original autoencoders (before dead-latent omission)."""

AUTOENCODER_KINDS: dict[str, NodeKind] = {
    "ae-mlp-post-act-v1": NodeKind.MLP_AUTOENCODER_LATENT,
    "ae-resid-delta-mlp-v1": NodeKind.MLP_AUTOENCODER_LATENT,
    "ae-mlp-post-act-v4": NodeKind.MLP_AUTOENCODER_LATENT,
    "ae-resid-delta-mlp-v4": NodeKind.MLP_AUTOENCODER_LATENT,
    "ae-resid-delta-attn-v4": NodeKind.ATTENTION_AUTOENCODER_LATENT,
}


def check_bounds(node: NodeId, shape: ModelShape, n_latents: int | None = None) -> None:
    """Raise ``BadInput`` naming the violated bound when ``node`` does not exist in ``shape``."""
    if not 0 <= node.layer < shape.n_layers:
        raise BadInput(
            f"layer {node.layer} out of range: {shape.name} has {shape.n_layers} layers",
            node=str(node),
            bound=shape.n_layers,
        )
    if node.kind is NodeKind.MLP_NEURON:
        limit, what = shape.d_mlp, "MLP neurons per layer"
    elif node.kind is NodeKind.ATTENTION_HEAD:
        limit, what = shape.n_heads, "attention heads per layer"
    elif n_latents is not None:
        limit, what = n_latents, f"latents in {node.autoencoder}"
    else:
        return
    if not 0 <= node.index < limit:
        raise BadInput(
            f"index {node.index} out of range: {shape.name} has {limit} {what}", node=str(node), bound=limit
        )
