"""Storing scored job results next to the node's records, in TDB's strict explanation format.

A result scored with method ``m`` is added to ``{explanations_path}/by-method/{m}/{layer}/{index}.jsonl``
of the dataset the node's record came from (``storage.datasets.method_dataset``); a job scored with
several methods adds one row to each method's file. A node scored on live records goes to the first
dataset covering its kind, or ``live_dataset`` when none does: where ``RecordReader.get_explanations``
looks. Writes use ``RecordReader.update_explanations``' ETag compare-and-swap, so concurrent jobs on one
node all land. The row carries no ``method`` key (TDB's loader would reject it): the folder says the
method. Simulation rows are TDB's ``ScoredExplanation`` / ``ScoredAttentionExplanation``; detection,
fuzzing and embedding rows are our ``ClassificationResults`` (``explanations.classification``).
Rescoring the same text with the same method replaces its row. An explanation that was not scored (an
explain job without ``scoreMethod``) is not stored.

Beside each file, ``{index}.provenance.json`` keeps how each explanation text was written (the few-shot
set, the prompt's token count; ``explanations.provenance``), for the same reason the method is in the
path. Every stored row is then queued for the search index (``explanations.search_index``), when one is
configured, and added in the background: a job does not wait for the embedding model, and a failure
there is logged and does not undo the stored rows.

Rows for one file are written once per flush, not once per result: while a write of a node's file is in
flight, rows for that file gather and the next write carries all of them (a node's file holds every
scored explanation, so 200 jobs on one node would otherwise rewrite it 200 times). Each caller returns
once the write holding its row is stored.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from neuron_explainer.errors import CorruptBlob, NotFound
from neuron_explainer.explanations.classification import (
    ClassificationResults,
    ClassifiedExplanation,
    ScoredClassification,
)
from neuron_explainer.explanations.protocols import Scored
from neuron_explainer.explanations.provenance import update_provenance
from neuron_explainer.explanations.results import (
    AttentionSimulationResults,
    NeuronSimulationResults,
    ScoredAttentionExplanation,
    ScoredAttentionSimulation,
    ScoredExplanation,
    ScoredSimulation,
)
from neuron_explainer.explanations.search_index import ExplanationIndex, IndexEntry
from neuron_explainer.jobs.spec import JobResult
from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.datasets import DatasetSpec, live_dataset, method_dataset
from neuron_explainer.storage.reader import ExplanationResults, RecordReader


@dataclass
class _Flush:
    """Rows (text, scored, provenance) for one file, gathered while the previous write of it runs."""

    dataset: DatasetSpec
    node: NodeId
    rows: list[tuple[str, Scored, dict[str, object] | None]] = field(default_factory=list)
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ExplanationWriter:
    """A ``PersistHook`` for ``JobManager``: ``await writer(result)``."""

    def __init__(self, reader: RecordReader, index: ExplanationIndex | None = None) -> None:
        self.reader = reader
        self.index = index
        self.writes = 0
        """Explanation files written (one per flush): for tests and metrics."""
        self._gathering: dict[str, _Flush] = {}
        self._writing: dict[str, asyncio.Lock] = {}

    async def dataset_for(self, node: NodeId, method: str) -> DatasetSpec:
        """The per-method dataset a result for ``node`` scored with ``method`` goes to."""
        try:
            base = (await self.reader.get_record(node)).dataset
        except NotFound:
            base = (self.reader.registry.datasets_for(node) or [live_dataset(node)])[0]
        return method_dataset(base, method)

    async def __call__(self, result: JobResult) -> None:
        node = result.spec.node
        stored: list[IndexEntry] = []
        for r in result.scores:
            if r.scored is None:
                continue
            await self.store(node, r.method, result.explanation, r.scored, result.provenance)
            dataset = await self.dataset_for(node, r.method)
            stored.append(IndexEntry(str(node), result.explanation, r.method, r.score, dataset.name))
        if self.index is not None and stored:
            self.index.add_soon(stored)  # in the background: a job never waits for the embedding model

    async def store(
        self,
        node: NodeId,
        method: str,
        explanation: str,
        scored: Scored,
        provenance: dict[str, object] | None = None,
    ) -> DatasetSpec:
        """One row in ``method``'s file (replacing one with the same text), and its provenance beside it;
        returns once the flush carrying it is stored."""
        dataset = await self.dataset_for(node, method)
        key = f"{dataset.name}|{node}"
        flush = self._gathering.get(key)
        if flush is None:
            flush = self._gathering[key] = _Flush(dataset, node)
            task = asyncio.create_task(self._flush(key, flush))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        flush.rows.append((explanation, scored, provenance))
        await asyncio.shield(flush.done)
        return dataset

    async def _flush(self, key: str, flush: _Flush) -> None:
        lock = self._writing.setdefault(key, asyncio.Lock())
        try:
            async with lock:  # the previous write of this file first; rows gather meanwhile
                if self._gathering.get(key) is flush:
                    del self._gathering[key]
                rows = list(flush.rows)

                def add_all(current: ExplanationResults | None) -> ExplanationResults:
                    for text, scored, _ in rows:
                        current = with_result(current, node=flush.node, explanation=text, scored=scored)
                    assert current is not None
                    return current

                await self.reader.update_explanations(flush.node, flush.dataset, add_all)
                self.writes += 1
                for text, _, provenance in rows:
                    if provenance:
                        await update_provenance(self.reader.store, flush.dataset, flush.node, text, provenance)
        except BaseException as exc:
            if not flush.done.done():
                flush.done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            flush.done.set_result(None)
        finally:
            if not lock.locked() and key not in self._gathering:
                self._writing.pop(key, None)


def with_result(
    current: ExplanationResults | None,
    *,
    node: NodeId,
    explanation: str,
    scored: Scored,
) -> ExplanationResults:
    """``current`` plus one row (replacing one with the same text); pure: reruns after a lost race."""
    if isinstance(scored, ScoredClassification):
        if current is None:
            current = ClassificationResults(node.layer, node.index, [])
        if not isinstance(current, ClassificationResults):
            raise CorruptBlob(f"{scored.method} explanations of {node} hold simulation results", node=str(node))
        others = [e for e in current.scored_explanations if e.explanation != explanation]
        return ClassificationResults(
            current.layer, current.index, [*others, ClassifiedExplanation(explanation, scored)]
        )
    if isinstance(scored, ScoredSimulation):
        if current is None:
            current = NeuronSimulationResults(node.layer, node.index, [])
        if not isinstance(current, NeuronSimulationResults):
            raise CorruptBlob(f"explanations of {node} hold other results", node=str(node))
        rows = [e for e in current.scored_explanations if e.explanation != explanation]
        return NeuronSimulationResults(current.layer, current.index, [*rows, ScoredExplanation(explanation, scored)])
    assert isinstance(scored, ScoredAttentionSimulation)
    if current is None:
        current = AttentionSimulationResults(node.layer, node.index, [])
    if not isinstance(current, AttentionSimulationResults):
        raise CorruptBlob(f"explanations of {node} hold neuron results", node=str(node))
    kept = [e for e in current.scored_explanations if e.explanation != explanation]
    row = ScoredAttentionExplanation(explanation, scored)
    return AttentionSimulationResults(current.layer, current.index, [*kept, row])
