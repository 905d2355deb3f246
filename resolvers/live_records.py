"""Live top-activating records: when no dataset has a node, its whole layer is computed over the
reference corpus (the dataset builder's ``build_live_layer``, every forward on the engine's thread),
written back to the store, and read from there — the model is the origin of a read-through cache.

One build per (kind, autoencoder, layer) at a time: concurrent requests for nodes of one layer wait
for the same build. The request that triggered the build sees ``provenance.source = LIVE`` (with the
dataset the records now live in); later reads find the dataset and see ``STORED``. A build costs one
pass over the reference corpus (seconds for tiny-gpt2 on a CPU).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.provenance import DataSource, Provenance
from resolvers.context import Context, Services
from resolvers.records import ResolvedRecord

log = logging.getLogger(__name__)

LayerKey = tuple[NodeKind, str | None, int]
LiveRecords = Callable[[Context, NodeId], Awaitable[ResolvedRecord]]


def _forget(builds: dict[LayerKey, asyncio.Task[None]], key: LayerKey, task: asyncio.Task[None]) -> None:
    builds.pop(key, None)  # a failed build is retried by the next request
    if not task.cancelled():
        task.exception()  # retrieved: its waiters got it, or all of them went away


def live_records(services: Services) -> LiveRecords:
    """The ``services.extras["live_records"]`` hook ``resolvers.records.resolve_record`` calls."""
    builds: dict[LayerKey, asyncio.Task[None]] = {}

    async def build(node: NodeId) -> None:
        from neuron_explainer.collation import build_live_layer

        engine = services.engine
        assert engine is not None and services.model is not None
        log.info("computing live records for %s layer %d over the reference corpus", node.kind.value, node.layer)
        spec = await build_live_layer(services.reader.store, services.model, node, run_on_model=engine.call)
        if spec not in services.registry.datasets_for(node):
            services.registry = services.registry.with_datasets([spec])
            services.reader.registry = services.registry

    async def resolve(ctx: Context, node: NodeId) -> ResolvedRecord:
        key = (node.kind, node.autoencoder, node.layer)
        task = builds.get(key)
        if task is None:
            task = builds[key] = asyncio.ensure_future(build(node))
            task.add_done_callback(lambda t: _forget(builds, key, t))
        await asyncio.shield(task)
        stored = await services.reader.get_record(node)
        model = services.model.name if services.model is not None else None
        return ResolvedRecord(stored.record, Provenance(DataSource.LIVE, stored.dataset.name, model, datetime.now(UTC)))

    return resolve
