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

from neuron_explainer.resolvers.context import Services
from neuron_explainer.resolvers.live_records import LiveRecordBuilder
from neuron_explainer.settings import ServerSettings

if TYPE_CHECKING:
    from neuron_explainer.inference.backend import InferenceBackend
    from neuron_explainer.inference.ray_backend import RayOptions
    from neuron_explainer.models.loaded_model import LoadedModel

log = logging.getLogger("neuron_explainer.server")
LENS_CACHE_BYTES = 64 * 1024 * 1024
"""Logit-lens scores kept (one vocabulary vector, 200 KB for GPT-2, per node and direction)."""


def engine_threads(settings: ServerSettings) -> int:
    """Torch's intra-op threads: by default one fewer than the cores, so the event loop (which parses
    and answers every request) keeps a core instead of fighting the forward pass for it."""
    return settings.torch_threads or max(1, (os.cpu_count() or 1) - 1)


def _load_and_warm(settings: ServerSettings) -> LoadedModel:
    from neuron_explainer.inference.startup import load_warm_model

    return load_warm_model(
        settings.model_name,
        mlp_autoencoder=settings.mlp_autoencoder_name,
        attn_autoencoder=settings.attn_autoencoder_name,
        torch_threads=engine_threads(settings),
    )


def _dump_snapshot() -> str:
    from neuron_explainer.inference.memory_debug import dump_memory_snapshot

    path = dump_memory_snapshot()
    return str(path) if path is not None else "CUDA is not available: no snapshot written"


def ray_options(settings: ServerSettings) -> RayOptions:
    from neuron_explainer.inference.ray_backend import RayOptions, parse_resources
    from neuron_explainer.inference.ray_replica import ReplicaConfig

    threads = settings.torch_threads or max(1, round(settings.ray_cpus_per_replica))
    replica = ReplicaConfig(
        settings.model_name,
        settings.mlp_autoencoder_name,
        settings.attn_autoencoder_name,
        settings.max_batch_size,
        settings.max_batch_wait_ms,
        threads,
    )
    return RayOptions(
        replica,
        address=settings.ray_address,
        replicas=settings.ray_replicas,
        cpus_per_replica=settings.ray_cpus_per_replica,
        gpus_per_replica=settings.ray_gpus_per_replica,
        resources=parse_resources(settings.ray_replica_resources),
        request_timeout_s=settings.ray_request_timeout_s,
        connect_timeout_s=settings.ray_connect_timeout_s,
        existing_app=settings.ray_app_name,
    )


def check_backend(settings: ServerSettings) -> None:
    """An unknown ``--inference_backend``, or ``ray`` without Ray installed, stops the server at start-up."""
    if settings.inference_backend not in ("local", "ray"):
        raise ValueError(f"--inference_backend must be local or ray, got {settings.inference_backend!r}")
    if settings.inference_backend == "ray" and settings.run_model:
        try:
            import ray  # noqa: F401
            from ray import serve  # noqa: F401
        except ImportError:
            raise ValueError("--inference_backend ray needs Ray Serve: pip install 'neuron-explainer[ray]'") from None


def _bounded(backend: InferenceBackend, settings: ServerSettings) -> InferenceBackend:
    """Bounded in front of the backend protocol, whatever runs the model (this process or Ray replicas)."""
    from neuron_explainer.inference.admission import BoundedBackend

    queued = settings.max_queued_forwards
    return BoundedBackend(backend, queued) if queued > 0 else backend


async def _open_ray(services: Services, settings: ServerSettings) -> None:
    from neuron_explainer.inference.ray_backend import RayBackend

    start = time.monotonic()
    options = ray_options(settings)
    ray = await RayBackend.start(options)
    services.model = ray.model
    services.engine = backend = _bounded(ray, settings)
    services.live_records = LiveRecordBuilder(services.reader, backend)
    log.info(
        "model %s served by %d Ray Serve replica(s) (%s, app %s) on %s, ready in %.1fs; batches of up to %d",
        ray.model.name,
        options.replicas,
        settings.ray_address or "a local cluster",
        options.app_name(),
        ray.model.device,
        time.monotonic() - start,
        settings.max_batch_size,
    )


async def open_model(services: Services, settings: ServerSettings) -> None:
    """Fill ``services.model``, ``engine``, ``live_records`` and ``memory_snapshot``; no-op without a model."""
    if not settings.run_model:
        log.info("--run_model False: live fields answer MODEL_NOT_LOADED")
        return
    if settings.inference_backend == "ray":
        if settings.cuda_memory_debugging:
            log.warning("--cuda_memory_debugging records this process only: the Ray replicas run the model")
        await _open_ray(services, settings)
        return
    # Imported here: torch and transformer-lens cost seconds a --run_model False server need not pay.
    from neuron_explainer.inference.engine import InferenceEngine
    from neuron_explainer.inference.memory_debug import start_memory_recording
    from neuron_explainer.inference.pass_cache import PassCache
    from neuron_explainer.storage.cache import ByteLRU

    if settings.cuda_memory_debugging:
        start_memory_recording()
        services.memory_snapshot = _dump_snapshot
    start = time.monotonic()
    model = await asyncio.to_thread(_load_and_warm, settings)
    services.model = model
    engine = InferenceEngine(
        model, settings.max_batch_size, settings.max_batch_wait_ms, torch_threads=engine_threads(settings)
    )
    services.engine = backend = _bounded(engine, settings)
    services.live_records = LiveRecordBuilder(services.reader, backend)
    if settings.pass_cache_mb > 0:
        services.passes = PassCache(settings.pass_cache_mb * 1024 * 1024)
    services.lens = ByteLRU(LENS_CACHE_BYTES)
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
    engine = services.engine
    specs = await build_demo_dataset(
        services.reader.store, services.model, run_on_model=engine.call, remote_model=not engine.in_process
    )
    services.reader.add_datasets(specs)
    log.info("demo dataset ready in %.1fs: %s", time.monotonic() - start, ", ".join(s.name for s in specs))
