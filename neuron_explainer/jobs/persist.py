"""Storing scored job results next to the node's records, in TDB's strict explanation format.

A result scored with method ``m`` is added to ``{explanations_path}/by-method/{m}/{layer}/{index}.jsonl``
of the dataset the node's record came from (``storage.datasets.method_dataset``). A node scored on
live records goes to the first dataset covering its kind, or ``live_dataset`` when none does: where
``RecordReader.get_explanations`` looks. Writes use ``RecordReader.update_explanations``' ETag
compare-and-swap, so concurrent jobs on one node all land. The row carries no ``method`` key (TDB's
loader would reject it): the folder says the method. Rescoring the same text with the same method
replaces its row. An explanation that was not scored (an explain job without ``scoreMethod``) is
not stored.
"""

from __future__ import annotations

import functools

from neuron_explainer.errors import CorruptBlob, NotFound
from neuron_explainer.explanations.results import (
    AttentionSimulationResults,
    NeuronSimulationResults,
    ScoredAttentionExplanation,
    ScoredAttentionSimulation,
    ScoredExplanation,
    ScoredSimulation,
)
from neuron_explainer.jobs.manager import JobResult
from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.datasets import DatasetSpec, live_dataset, method_dataset
from neuron_explainer.storage.reader import ExplanationResults, RecordReader


class ExplanationWriter:
    """A ``PersistHook`` for ``JobManager``: ``await writer(result)``."""

    def __init__(self, reader: RecordReader) -> None:
        self.reader = reader

    async def dataset_for(self, node: NodeId, method: str) -> DatasetSpec:
        """The per-method dataset a result for ``node`` scored with ``method`` goes to."""
        try:
            base = (await self.reader.get_record(node)).dataset
        except NotFound:
            base = (self.reader.registry.datasets_for(node) or [live_dataset(node)])[0]
        return method_dataset(base, method)

    async def __call__(self, result: JobResult) -> None:
        if result.scored is None or result.scoring_method is None:
            return
        node = result.spec.node
        dataset = await self.dataset_for(node, result.scoring_method)
        add = functools.partial(with_result, node=node, explanation=result.explanation, scored=result.scored)
        await self.reader.update_explanations(node, dataset, add)


def with_result(
    current: ExplanationResults | None,
    *,
    node: NodeId,
    explanation: str,
    scored: ScoredSimulation | ScoredAttentionSimulation,
) -> ExplanationResults:
    """``current`` plus one row (replacing one with the same text); pure: reruns after a lost race."""
    if isinstance(scored, ScoredSimulation):
        if current is None:
            current = NeuronSimulationResults(node.layer, node.index, [])
        if not isinstance(current, NeuronSimulationResults):
            raise CorruptBlob(f"explanations of {node} hold attention results", node=str(node))
        rows = [e for e in current.scored_explanations if e.explanation != explanation]
        return NeuronSimulationResults(
            current.layer, current.index, [*rows, ScoredExplanation(explanation, scored)]
        )
    if current is None:
        current = AttentionSimulationResults(node.layer, node.index, [])
    if not isinstance(current, AttentionSimulationResults):
        raise CorruptBlob(f"explanations of {node} hold neuron results", node=str(node))
    kept = [e for e in current.scored_explanations if e.explanation != explanation]
    row = ScoredAttentionExplanation(explanation, scored)
    return AttentionSimulationResults(current.layer, current.index, [*kept, row])
