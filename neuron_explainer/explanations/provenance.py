"""How each stored explanation was written, kept beside its file (TDB's JSONL rejects unknown keys).

``{explanations_path}/{layer}/{index}.provenance.json`` of a per-method dataset holds
``{"layer": L, "index": I, "explanations": {text: {"few_shot": "dataset" | "built-in",
"few_shot_nodes": [...], "prompt_tokens": n, "token_counter": "..."}}}``; written with an ETag
compare-and-swap like the explanations themselves, read by ``Explanation.provenance``.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from neuron_explainer.errors import CorruptBlob, UpstreamUnavailable
from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.base import BlobStore, PreconditionFailed
from neuron_explainer.storage.datasets import DatasetSpec
from neuron_explainer.storage.paths import join


def provenance_path(dataset: DatasetSpec, node: NodeId) -> str:
    return join(dataset.explanations_path, str(node.layer), f"{node.index}.provenance.json")


def _decode(data: bytes, blob: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict) or not isinstance(obj.get("explanations"), dict):
            raise ValueError('no "explanations" object')
        return obj
    except ValueError as e:
        raise CorruptBlob(f"explanation provenance {blob} does not parse: {e}", blob=blob) from e


async def load_provenance(store: BlobStore, dataset: DatasetSpec, node: NodeId) -> dict[str, dict[str, Any]]:
    """Explanation text -> how it was written; ``{}`` when nothing was recorded."""
    path = provenance_path(dataset, node)
    data = await store.get(path)
    return {} if data is None else dict(_decode(data, path)["explanations"])


async def update_provenance(
    store: BlobStore, dataset: DatasetSpec, node: NodeId, text: str, provenance: dict[str, object], attempts: int = 50
) -> None:
    path = provenance_path(dataset, node)
    for attempt in range(attempts):
        found = await store.get_with_etag(path)
        obj: dict[str, Any] = (
            _decode(found[0], path) if found else {"layer": node.layer, "index": node.index, "explanations": {}}
        )
        explanations: dict[str, Any] = obj["explanations"]
        explanations[text] = provenance
        try:
            await store.put(path, json.dumps(obj, ensure_ascii=False).encode(), if_match=found[1] if found else "")
            return
        except PreconditionFailed:
            await asyncio.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
    raise UpstreamUnavailable(f"{path} kept changing: gave up after {attempts} tries", blob=path)
