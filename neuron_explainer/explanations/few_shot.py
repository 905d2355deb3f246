"""Few-shot examples for the explainer from the served dataset itself: real records, same model.

The search index already lists every stored explanation with its scores, so the source picks, among
other nodes of the same model and kind, those whose explanation scored best by simulation (``baseline``
or ``all-at-once``, at least ``min_score``), one explanation per node, and shows their train records as
the examples. With fewer than asked for, the explainer falls back to its built-in set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import NotFound
from neuron_explainer.explanations.neuron_prompts import FewShotNeuron
from neuron_explainer.explanations.search_index import ExplanationIndex
from neuron_explainer.explanations.splits import train_records
from neuron_explainer.nodes import NodeId

SIMULATION_METHODS = ("baseline", "all-at-once")


class DatasetFewShot:
    def __init__(
        self,
        index: ExplanationIndex,
        load_stored_record: Callable[[str], Awaitable[NeuronRecord]],
        *,
        min_score: float = 0.4,
    ) -> None:
        self.index = index
        self.load_stored_record = load_stored_record
        self.min_score = min_score

    async def few_shot(self, node: NodeId, n: int) -> list[tuple[str, FewShotNeuron]]:
        await self.index.flush()
        await self.index.refresh()
        prefix = str(node).rsplit("/", 2)[0] + "/"  # "model/kind/"
        best: dict[str, tuple[float, str]] = {}
        for hit in self.index.entries():
            if not hit.node.startswith(prefix) or hit.node == str(node) or hit.node.count("/") != str(node).count("/"):
                continue
            score = max((s for m, s in hit.scores.items() if m in SIMULATION_METHODS and s is not None), default=None)
            if score is not None and score >= self.min_score and score > best.get(hit.node, (-2.0, ""))[0]:
                best[hit.node] = (score, hit.text)
        out: list[tuple[str, FewShotNeuron]] = []
        for other, (_, text) in sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0])):
            try:
                record = await self.load_stored_record(other)
            except NotFound:
                continue
            records = train_records(record)
            if records:
                out.append((other, FewShotNeuron(records, text)))
            if len(out) == n:
                break
        return out
