"""Live top-activating records: when no dataset has a node of the running model (or a client asks
``source: LIVE``), its whole layer is computed over the reference corpus (the dataset builder's
``build_live_layer``, every forward on the model's side) into a live dataset of its own, and read from
there: the model is the origin of a read-through cache that never writes over a stored dataset.

Only nodes of the running model are computed, and only within its bounds (``BadInput`` otherwise): a
read never builds anything for a node the model cannot have. One build per (kind, autoencoder, layer)
at a time: concurrent requests for nodes of one layer wait for the same build. Every read of the live
dataset says ``provenance.source = LIVE``. A build costs one pass over the reference corpus (seconds
for tiny-gpt2 on a CPU) and writes no checkpoint, lock or index entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from neuron_explainer.errors import BadInput
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.datasets import DatasetSpec
from neuron_explainer.storage.reader import RecordReader, StoredRecord

if TYPE_CHECKING:
    from neuron_explainer.inference.backend import InferenceBackend

log = logging.getLogger(__name__)

LayerKey = tuple[NodeKind, str | None, int]


class LiveRecordBuilder:
    """``await builder(node)``: the node's record, its layer built live first. Owns its build tasks."""

    def __init__(self, reader: RecordReader, engine: InferenceBackend) -> None:
        self.reader = reader
        self.engine = engine
        self._builds: dict[LayerKey, asyncio.Task[DatasetSpec]] = {}
        self._built: dict[LayerKey, DatasetSpec] = {}

    def check(self, node: NodeId) -> None:
        """``BadInput`` unless the running model has ``node`` (its model, kind, autoencoder and bounds)."""
        from neuron_explainer.inference.live import check_node

        model = self.engine.model
        if node.model != model.name:
            raise BadInput(
                f"{node} is a node of {node.model}; live records are computed only for the running model {model.name}",
                node=str(node),
                model=model.name,
            )
        check_node(model, node)

    async def __call__(self, node: NodeId) -> StoredRecord:
        self.check(node)
        key = (node.kind, node.autoencoder, node.layer)
        dataset = self._built.get(key)
        if dataset is None:
            task = self._builds.get(key)
            if task is None:
                task = self._builds[key] = asyncio.ensure_future(self._build(node))
                task.add_done_callback(lambda t: self._forget(key, t))
            dataset = await asyncio.shield(task)  # a client that goes away does not cancel the build
        return await self.reader.get_record(node, dataset)

    async def close(self) -> None:
        """Cancel builds still running (server shutdown); their partial output is never made visible."""
        tasks = list(self._builds.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _build(self, node: NodeId) -> DatasetSpec:
        from neuron_explainer.collation import build_live_layer

        log.info("live records for %s layer %d over the reference corpus", node.kind.value, node.layer)
        engine = self.engine
        spec = await build_live_layer(
            self.reader.store, engine.model, node, run_on_model=engine.call, remote_model=not engine.in_process
        )
        self.reader.add_datasets([spec], last=True)
        return spec

    def _forget(self, key: LayerKey, task: asyncio.Task[DatasetSpec]) -> None:
        self._builds.pop(key, None)  # a failed build is retried by the next request
        if not task.cancelled() and task.exception() is None:
            self._built[key] = task.result()
