"""Every explanation row a store holds, for export: walks each dataset's explanation folders (the base one
and every ``by-method/{method}``) with ``BlobStore.list``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuron_explainer.explanations.classification import ClassifiedExplanation
from neuron_explainer.explanations.codec import decode_explanations
from neuron_explainer.explanations.results import ScoredAttentionExplanation, ScoredExplanation, preferred_score
from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import METHODS_FOLDER, DatasetSpec
from neuron_explainer.storage.paths import join


@dataclass(frozen=True, slots=True)
class StoredRow:
    node: NodeId
    text: str
    method: str | None
    """The scoring method (from the folder); None for a dataset's own (public) explanation file."""
    score: float | None
    raw: ScoredExplanation | ScoredAttentionExplanation | ClassifiedExplanation


def _node_of(spec: DatasetSpec, layer: int, index: int) -> NodeId:
    return NodeId(spec.model, spec.kind, layer, index, autoencoder=spec.autoencoder)


async def stored_rows(store: BlobStore, datasets: Sequence[DatasetSpec]) -> list[StoredRow]:
    """Rows of every ``{layer}/{index}.jsonl`` under the datasets' explanation folders, sorted by node."""
    out: list[StoredRow] = []
    for spec in datasets:
        prefix = spec.explanations_path.rstrip("/") + "/"
        for path in await store.list(prefix):
            rest = path[len(prefix) :].split("/")
            method = None
            if len(rest) == 4 and rest[0] == METHODS_FOLDER:
                method, rest = rest[1], rest[2:]
            if len(rest) != 2 or not rest[0].isdigit() or not rest[1].endswith(".jsonl"):
                continue
            stem = rest[1].removesuffix(".jsonl")
            if not stem.isdigit():
                continue
            data = await store.get(path)
            if data is None:
                continue
            results = decode_explanations(data, join(store.location, path))
            node = _node_of(spec, int(rest[0]), int(stem))
            for row in results.scored_explanations:
                if row.explanation is None:
                    continue
                out.append(StoredRow(node, row.explanation, method, preferred_score(row), row))
    return sorted(out, key=lambda r: (str(r.node), r.text, r.method or ""))
