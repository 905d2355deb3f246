"""Loading a model for serving: boot it with its autoencoders, then pay the first forward's one-off costs.

Shared by the local engine's start-up and each Ray Serve replica, so both serve the same model the same way.
"""

from __future__ import annotations

from neuron_explainer.models.loaded_model import LoadedModel


def load_warm_model(
    model_name: str,
    *,
    mlp_autoencoder: str | None = None,
    attn_autoencoder: str | None = None,
    torch_threads: int | None = None,
    device: str | None = None,
) -> LoadedModel:
    """Blocking (seconds for tiny-gpt2); the loader's typed errors (``ModelNotLoaded``, ``BadInput``) pass through."""
    import torch
    from transformers.utils import logging as transformers_logging

    from neuron_explainer.inference.forward import run_batch
    from neuron_explainer.inference.requests import ForwardRequest
    from neuron_explainer.models import hook_names
    from neuron_explainer.models.model_registry import load_model

    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    transformers_logging.disable_progress_bar()  # "Loading weights" for a second is noise in a server log
    model = load_model(model_name, device=device, mlp_autoencoder=mlp_autoencoder, attn_autoencoder=attn_autoencoder)
    # The first forward of a fresh bridge pays one-off set-up costs; pay them before the first user does.
    # Run directly (not through an engine), so ``forward_count`` counts user work only.
    run_batch(model, [ForwardRequest((0,) * 8, frozenset({hook_names.mlp_post(0)}))])
    return model
