"""What the server runs: the model's name, shape and autoencoders (the original's ``/model_info``), and
the inference engine's counters."""

from __future__ import annotations

from dataclasses import dataclass

from neuron_explainer.resolvers.context import Context


@dataclass(frozen=True, slots=True)
class ModelFacts:
    model_name: str
    n_layers: int | None
    has_mlp_autoencoder: bool
    mlp_autoencoder_name: str | None
    has_attention_autoencoder: bool
    attention_autoencoder_name: str | None
    running: bool
    d_model: int | None
    d_mlp: int | None
    n_heads: int | None
    n_ctx: int | None
    mlp_autoencoder_latents: int | None
    attention_autoencoder_latents: int | None


@dataclass(frozen=True, slots=True)
class EngineFacts:
    forward_count: int
    backward_count: int
    oom_count: int
    max_batch_size: int
    max_batch_wait_ms: float


def model_info(ctx: Context) -> ModelFacts:
    """The loaded model's own name, config and autoencoders when one runs; else what the flags name."""
    services = ctx.services
    settings = services.settings
    model = services.model
    name = model.name if model is not None else settings.model_name
    mlp_ae = model.mlp_autoencoder if model is not None else None
    attn_ae = model.attn_autoencoder if model is not None else None
    mlp_name = mlp_ae.name if mlp_ae is not None else settings.mlp_autoencoder_name
    attn_name = attn_ae.name if attn_ae is not None else settings.attn_autoencoder_name
    shape = services.shape(name)
    return ModelFacts(
        model_name=name,
        n_layers=shape.n_layers if shape else None,
        has_mlp_autoencoder=mlp_name is not None,
        mlp_autoencoder_name=mlp_name,
        has_attention_autoencoder=attn_name is not None,
        attention_autoencoder_name=attn_name,
        running=services.engine is not None,
        d_model=shape.d_model if shape else None,
        d_mlp=shape.d_mlp if shape else None,
        n_heads=shape.n_heads if shape else None,
        n_ctx=shape.n_ctx if shape else None,
        mlp_autoencoder_latents=mlp_ae.n_latents if mlp_ae is not None else None,
        attention_autoencoder_latents=attn_ae.n_latents if attn_ae is not None else None,
    )


def engine_stats(ctx: Context) -> EngineFacts | None:
    engine = ctx.services.engine
    if engine is None:
        return None
    return EngineFacts(
        forward_count=engine.forward_count,
        backward_count=engine.backward_count,
        oom_count=engine.oom_count,
        max_batch_size=engine.max_batch_size,
        max_batch_wait_ms=engine.max_wait_s * 1000.0,
    )
