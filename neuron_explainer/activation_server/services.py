"""Building and closing the long-lived services, in one place, in dependency order."""

from __future__ import annotations

import logging

from neuron_explainer.settings import ServerSettings
from neuron_explainer.storage.datasets import DatasetRegistry
from neuron_explainer.storage.locations import open_store
from neuron_explainer.storage.reader import RecordReader
from resolvers.context import Services
from schema.response_cache import ResponseCache

log = logging.getLogger("neuron_explainer.server")


async def open_services(settings: ServerSettings) -> Services:
    store = open_store(settings.data_root)
    registry = DatasetRegistry.default()
    try:
        registry = await registry.with_index(store)
    except Exception as exc:  # an unreachable store must not stop the server from starting
        log.warning("could not read the dataset index at %s: %s", store.location, exc)
    reader = RecordReader(
        store, registry, cache_bytes=settings.cache_bytes, max_concurrency=settings.max_concurrent_reads
    )
    services = Services(
        settings=settings, reader=reader, registry=registry, response_cache=ResponseCache(settings.cache_bytes // 4)
    )
    log.info("serving data from %s (%d datasets)", store.location, len(registry.all()))
    return services


async def close_services(services: Services) -> None:
    for name in ("jobs", "engine", "llm"):
        part = getattr(services, name)
        close = getattr(part, "close", None) if part is not None else None
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
    await services.reader.store.close()
