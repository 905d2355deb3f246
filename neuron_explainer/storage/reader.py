"""``RecordReader``: stored records and explanations of a node, found through the dataset registry.

Records are immutable, so decoded ``NeuronRecord``s stay in a byte-bounded LRU keyed by blob path.
Explanations are not: jobs append to them. They are cached for ``explanations_ttl_s`` only (misses
included), and ``update_explanations`` invalidates its own writes at once.

``get_explanations`` also reads the per-method datasets jobs write (``storage.datasets.method_dataset``)
for every name in ``explanation_methods``; an explanation's ``method`` comes from that path (or, for
files written with Stream A's optional ``method`` key, from the file), and is None for public files.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson

from neuron_explainer.activations.codec import decode_neuron_record
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput, CorruptBlob, NotFound, UpstreamUnavailable
from neuron_explainer.explanations.classification import ClassifiedExplanation
from neuron_explainer.explanations.codec import AnyResults, decode_explanations, encode_explanations
from neuron_explainer.explanations.results import (
    ScoredAttentionExplanation,
    ScoredExplanation,
    preferred_score,
)
from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.base import BlobStore, PreconditionFailed
from neuron_explainer.storage.cache import ByteLRU
from neuron_explainer.storage.datasets import DatasetRegistry, DatasetSpec, explanation_path, record_path

ExplanationResults = AnyResults

DECODED_BYTES_PER_BLOB_BYTE = 4
"""Cache sizes are estimated as blob bytes times this: a decoded record's Python floats and strings
take more room than their JSON text (measured with tracemalloc: 3.4x for per-token records, 1.8x for
token-pair records, both with full-precision floats; shorter float text raises the ratio)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StoredRecord:
    record: NeuronRecord
    dataset: DatasetSpec
    """The first dataset (in registry order) that had the node."""


@dataclass(frozen=True, slots=True)
class StoredExplanation:
    text: str
    score: float | None
    """``ev_correlation_score`` (neurons, latents) or ``roc_auc_score`` (heads); None if unscored or NaN."""
    dataset: str
    method: str | None
    raw: ScoredExplanation | ScoredAttentionExplanation | ClassifiedExplanation


@dataclass(frozen=True, slots=True)
class _Sized(Generic[T]):
    value: T
    size: int


def _size(entry: _Sized[T]) -> int:
    return entry.size


class RecordReader:
    """Reads a node's stored data from ``store`` through ``registry``; at most ``max_concurrency``
    blob reads (and their decodes, which run in worker threads) at once."""

    def __init__(
        self,
        store: BlobStore,
        registry: DatasetRegistry,
        *,
        cache_bytes: int = 1 << 30,
        max_concurrency: int = 64,
        explanations_ttl_s: float = 5.0,
        explanation_methods: Sequence[str] = (),
    ) -> None:
        if max_concurrency < 1:
            raise BadInput("max_concurrency must be at least 1", max_concurrency=max_concurrency)
        self.store = store
        self.registry = registry
        self.records: ByteLRU[str, _Sized[NeuronRecord]] = ByteLRU(cache_bytes)
        self.explanations: ByteLRU[str, _Sized[ExplanationResults | None]] = ByteLRU(
            max(cache_bytes // 16, 1 << 20), ttl_s=explanations_ttl_s
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._metadata: dict[str, dict[str, Any] | None] = {}
        self.explanation_methods = tuple(explanation_methods)
        """Scoring methods whose per-method explanation datasets ``get_explanations`` also reads."""

    def add_datasets(self, specs: Sequence[DatasetSpec], *, last: bool = False) -> None:
        """Serve these datasets too (the demo dataset or a live build just wrote them); ``last``: tried
        after every dataset known now (a live build never shadows stored records)."""
        known = self.registry.all()
        missing = [spec for spec in specs if spec not in known]
        if missing:
            self.registry = DatasetRegistry([*known, *missing]) if last else self.registry.with_datasets(missing)

    def blob_name(self, path: str) -> str:
        """The readable full name of a blob, for errors and provenance."""
        return f"{self.store.location.rstrip('/')}/{path}"

    async def get_record(self, node: NodeId, dataset: DatasetSpec | None = None) -> StoredRecord:
        """The node's record from the first dataset that has it (or from ``dataset`` alone);
        ``NotFound`` naming every blob tried."""
        tried: list[str] = []
        for spec in self.registry.datasets_for(node) if dataset is None else [dataset]:
            path = record_path(spec, node.layer, node.index)
            entry = await self.records.get_or_load(path, _size, functools.partial(self._load_record, path))
            if entry is not None:
                return StoredRecord(entry.value, spec)
            tried.append(self.blob_name(path))
        if not tried:
            raise NotFound(f"no dataset holds {node.kind.value} records of {node.model}", node=str(node), tried=[])
        raise NotFound(f"no dataset has {node} (tried {', '.join(tried)})", node=str(node), tried=tried)

    async def dataset_metadata(self, spec: DatasetSpec) -> dict[str, Any] | None:
        """``{records_path}/metadata.json`` as the dataset builder wrote it (how the dataset was made:
        settings, quantile levels, corpus hash); ``None`` for datasets without one (the public ones) or
        one that does not parse. Read once per dataset: the builder's settings of a dataset never change."""
        if spec.name not in self._metadata:
            async with self._semaphore:
                raw = await self.store.get(f"{spec.records_path.rstrip('/')}/metadata.json")
            try:
                value = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                value = None
            self._metadata[spec.name] = value if isinstance(value, dict) else None
        return self._metadata[spec.name]

    async def get_explanations(self, node: NodeId) -> list[StoredExplanation]:
        """Every explanation of the node across its datasets, in registry order, then the per-method
        datasets of ``explanation_methods``; ``[]`` when none.

        Entries without text (legacy "baseline" rows) are skipped, as the original does.
        """
        specs = self.registry.explanation_datasets(node, self.explanation_methods)
        found = await asyncio.gather(*(self._explanations_in(spec, node) for spec in specs))
        return [e for per_dataset in found for e in per_dataset]

    async def update_explanations(
        self,
        node: NodeId,
        dataset: DatasetSpec,
        mutate: Callable[[ExplanationResults | None], ExplanationResults],
        *,
        attempts: int = 50,
    ) -> ExplanationResults:
        """Read-modify-write the node's explanations blob in ``dataset`` with an ETag compare-and-swap.

        ``mutate`` gets the current results (``None`` if there are none yet) and returns the new ones;
        it is called again after every lost race, on the winner's data, so it must be a pure function
        of its argument (e.g. "append my explanation"). Nobody's write is lost.
        """
        if dataset.model != node.model or dataset.kind is not node.kind or dataset.autoencoder != node.autoencoder:
            raise BadInput(f"dataset {dataset.name!r} does not hold {node}", node=str(node), dataset=dataset.name)
        path = explanation_path(dataset, node.layer, node.index)
        blob = self.blob_name(path)
        for attempt in range(attempts):
            found = await self.store.get_with_etag(path)
            current = None
            if found is not None:
                current = await asyncio.to_thread(decode_explanations, found[0], blob)
            updated = mutate(current)
            data = await asyncio.to_thread(encode_explanations, updated)
            try:
                await self.store.put(path, data, if_match=found[1] if found is not None else "")
            except PreconditionFailed:
                await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
                continue
            finally:
                self.explanations.invalidate(path)
            return updated
        raise UpstreamUnavailable(f"{blob} kept changing: gave up after {attempts} tries", blob=blob)

    async def _load_record(self, path: str) -> _Sized[NeuronRecord] | None:
        async with self._semaphore:
            data = await self.store.get(path)
            if data is None:
                return None
            record = await asyncio.to_thread(decode_neuron_record, data, self.blob_name(path))
        return _Sized(record, len(data) * DECODED_BYTES_PER_BLOB_BYTE)

    async def _load_explanations(self, path: str) -> _Sized[ExplanationResults | None]:
        async with self._semaphore:
            data = await self.store.get(path)
            if data is None:
                return _Sized(None, 64)
            results = await asyncio.to_thread(decode_explanations, data, self.blob_name(path))
        return _Sized(results, len(data) * DECODED_BYTES_PER_BLOB_BYTE)

    async def _explanations_in(self, spec: DatasetSpec, node: NodeId) -> list[StoredExplanation]:
        path = explanation_path(spec, node.layer, node.index)
        entry = await self.explanations.get_or_load(path, _size, functools.partial(self._load_explanations, path))
        results = entry.value if entry is not None else None
        if results is None:
            return []
        if (results.layer, results.index) != (node.layer, node.index):
            blob = self.blob_name(path)
            raise CorruptBlob(
                f"{blob} holds explanations of layer {results.layer} index {results.index}, not {node}",
                blob=blob,
            )
        out: list[StoredExplanation] = []
        for scored in results.scored_explanations:
            if scored.explanation is None:
                continue
            method = spec.method or (
                scored.scored_classification.method if isinstance(scored, ClassifiedExplanation) else scored.method
            )
            score = preferred_score(scored)
            out.append(StoredExplanation(scored.explanation, score, spec.name, method, scored))
        return out
