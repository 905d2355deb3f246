"""Starting the live side at server start-up: the model, its autoencoders and the inference engine.

The model loads in a worker thread (seconds for tiny-gpt2, tens of seconds for GPT-2 XL) so the event
loop stays free; the server answers requests only once it is loaded (uvicorn serves after the
lifespan start-up), and a model that cannot be loaded stops the server with the loader's message —
e.g. which HuggingFace id is missing from which cache and how to provide it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from neuron_explainer.settings import ServerSettings
from resolvers.context import Services
from resolvers.live_records import live_records

if TYPE_CHECKING:
    from neuron_explainer.models.loaded_model import LoadedModel

log = logging.getLogger("neuron_explainer.server")


def engine_threads(settings: ServerSettings) -> int:
    """Torch's intra-op threads: by default one fewer than the cores, so the event loop (which parses
    and answers every request) keeps a core instead of fighting the forward pass for it."""
    return settings.torch_threads or max(1, (os.cpu_count() or 1) - 1)


def _load_and_warm(settings: ServerSettings) -> LoadedModel:
    import torch

    from neuron_explainer.inference.forward import run_batch
    from neuron_explainer.inference.requests import ForwardRequest
    from neuron_explainer.models import hook_names
    from neuron_explainer.models.model_registry import load_model

    torch.set_num_threads(engine_threads(settings))
    model = load_model(
        settings.model_name,
        mlp_autoencoder=settings.mlp_autoencoder_name,
        attn_autoencoder=settings.attn_autoencoder_name,
    )
    # The first forward of a fresh bridge pays one-off set-up costs; pay them before the first user does.
    # Run directly (not through the engine), so ``engine.forward_count`` counts user work only.
    run_batch(model, [ForwardRequest((0,) * 8, frozenset({hook_names.mlp_post(0)}))])
    return model


def _dump_snapshot() -> str:
    from neuron_explainer.inference.memory_debug import dump_memory_snapshot

    path = dump_memory_snapshot()
    return str(path) if path is not None else "CUDA is not available: no snapshot written"


async def open_model(services: Services, settings: ServerSettings) -> None:
    """Fill ``services.model``, ``services.engine`` and the model's ``extras``; no-op with ``--run_model False``."""
    if not settings.run_model:
        log.info("--run_model False: live fields answer MODEL_NOT_LOADED")
        return
    # Imported here: torch and transformer-lens cost seconds a --run_model False server need not pay.
    from neuron_explainer.inference.engine import InferenceEngine
    from neuron_explainer.inference.memory_debug import start_memory_recording

    if settings.cuda_memory_debugging:
        start_memory_recording()
        services.extras["dump_memory_snapshot"] = _dump_snapshot
    start = time.monotonic()
    model = await asyncio.to_thread(_load_and_warm, settings)
    services.model = model
    services.engine = InferenceEngine(
        model, settings.max_batch_size, settings.max_batch_wait_ms, torch_threads=engine_threads(settings)
    )
    services.extras["latent_counts"] = {ae.name: ae.n_latents for ae in model.autoencoders.values()}
    services.extras["live_records"] = live_records(services)
    aes = ", ".join(f"{ae.name} ({ae.n_latents} latents)" for ae in model.autoencoders.values()) or "none"
    log.info(
        "model %s loaded from %s on %s in %.1fs; autoencoders: %s; batches of up to %d; %d torch threads",
        model.name,
        model.checkpoint,
        model.device,
        time.monotonic() - start,
        aes,
        settings.max_batch_size,
        engine_threads(settings),
    )


async def open_demo_dataset(services: Services, settings: ServerSettings) -> None:
    """``--build_demo_dataset True``: make sure the store holds every kind and layer of the running model over
    the shipped reference corpus (built once, in seconds for tiny-gpt2; later starts find it and skip)."""
    if not settings.build_demo_dataset:
        return
    if services.model is None or services.engine is None:
        log.warning("--build_demo_dataset needs a running model (--run_model True): skipped")
        return
    from neuron_explainer.collation import build_demo_dataset

    start = time.monotonic()
    specs = await build_demo_dataset(services.reader.store, services.model, run_on_model=services.engine.call)
    missing = [spec for spec in specs if spec not in services.registry.all()]
    if missing:
        services.registry = services.registry.with_datasets(missing)
        services.reader.registry = services.registry
    log.info("demo dataset ready in %.1fs: %s", time.monotonic() - start, ", ".join(s.name for s in specs))
