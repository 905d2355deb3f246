"""Neuronpedia's explanation export: gzipped JSON lines, one ``Explanation`` row per line.

The rows are those of Neuronpedia's ``Explanation`` table as its bulk export writes them
(``v1/{modelId}/{layer}/explanations/batch-{n}.jsonl.gz``): ``modelId``, ``layer`` (the source id,
``"{layer}-{source}"``, e.g. ``6-res-jb``), ``index`` (a string), ``description`` (the explanation),
``typeName``, ``explanationModelName``, ``scoreV1``, ``scoreV2``, ``authorId``, ``notes``, dates, ...
We write one row per (node, explanation text): ``scoreV1`` is the simulation score when there is one (as
Neuronpedia's own scoreV1), else the first method's, and ``scores`` (``[{"explanationScoreTypeName",
"value"}]``, the shape of Neuronpedia's ``ExplanationScore`` rows) carries every method's score. Our
``source`` is the node kind or autoencoder name unless a mapping says otherwise.

Import stores each row: with ``scores`` naming our methods, one row per method (scores only: the export
has no per-sequence data); otherwise ``scoreV1`` as the row of the dataset's own explanation file (as the
public explanations are kept, ``method`` null).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from neuron_explainer.errors import BadInput
from neuron_explainer.explanations.classification import ScoredClassification
from neuron_explainer.explanations.exchange.rows import StoredRow
from neuron_explainer.explanations.protocols import Scored
from neuron_explainer.explanations.results import ScoredAttentionSimulation, ScoredSimulation
from neuron_explainer.nodes import NodeId

BATCH = 1000
SIMULATION_FIRST = ("baseline", "all-at-once", "token-lookup")
CLASSIFIERS = ("detection", "fuzzing", "embedding")
Store = Callable[[NodeId, str | None, str, Scored], Awaitable[object]]
"""Stores one row: (node, method or None for the dataset's own file, text, scored)."""


def _source(node: NodeId) -> str:
    return node.autoencoder or node.kind.value


def export_neuronpedia(rows: Sequence[StoredRow], out: Path, *, author: str = "neuron-explainer") -> list[Path]:
    """Writes ``out/v1/{model}/{layer}-{source}/explanations/batch-{n}.jsonl.gz``; returns the files."""
    grouped: dict[tuple[NodeId, str], list[StoredRow]] = defaultdict(list)
    for row in rows:
        grouped[(row.node, row.text)].append(row)
    by_folder: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    now = datetime.now(UTC).isoformat()
    for (node, text), group in sorted(grouped.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])):
        scores = {r.method: r.score for r in group if r.method is not None}
        headline = next((scores[m] for m in SIMULATION_FIRST if m in scores), None)
        if headline is None:
            headline = next((r.score for r in group if r.method is None), None)
        if headline is None and scores:
            headline = next(iter(scores.values()))
        layer = f"{node.layer}-{_source(node)}"
        by_folder[(node.model, layer)].append(
            {
                "id": hashlib.sha256(f"{node}\n{text}".encode()).hexdigest()[:25],
                "modelId": node.model,
                "layer": layer,
                "index": str(node.index),
                "description": text,
                "authorId": author,
                "triggeredByUserId": None,
                "notes": None,
                "scoreV1": headline if headline is not None else 0.0,
                "scoreV2": None,
                "typeName": None,
                "explanationModelName": None,
                "umap_x": None,
                "umap_y": None,
                "umap_cluster": None,
                "umap_log_feature_sparsity": None,
                "createdAt": now,
                "updatedAt": now,
                "scores": [{"explanationScoreTypeName": m, "value": v} for m, v in scores.items()],
            }
        )
    files = []
    for (model, layer), items in sorted(by_folder.items()):
        folder = out / "v1" / model / layer / "explanations"
        folder.mkdir(parents=True, exist_ok=True)
        for n, start in enumerate(range(0, len(items), BATCH)):
            path = folder / f"batch-{n}.jsonl.gz"
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in items[start : start + BATCH])
            path.write_bytes(gzip.compress(lines.encode()))
            files.append(path)
    return files


def _placeholder(method: str, score: float | None, head: bool) -> Scored:
    """A score without its per-sequence data (the export has none)."""
    if method in CLASSIFIERS:
        return ScoredClassification(method, [], score, roc_auc=score if method == "embedding" else None)
    if head:
        return ScoredAttentionSimulation([], score)
    return ScoredSimulation([], ev_correlation_score=score)


def read_rows(path: Path) -> list[dict[str, Any]]:
    files = sorted(path.rglob("*.jsonl.gz")) if path.is_dir() else [path]
    rows = []
    for file in files:
        for number, line in enumerate(gzip.decompress(file.read_bytes()).decode().splitlines(), start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BadInput(f"{file}:{number} is not JSON: {e.msg}", file=str(file)) from e
    return rows


async def import_neuronpedia(
    path: Path,
    store_row: Store,
    parse_node: Callable[[str], NodeId],
    *,
    sources: Mapping[str, str] | None = None,
    model: str | None = None,
) -> int:
    """Store every row of the export at ``path`` (a file or a folder of them); returns rows stored.

    ``sources`` maps a Neuronpedia source (``res-jb``) to our kind or autoencoder name; ``model`` replaces
    ``modelId``. A row whose node cannot be named is ``BadInput`` naming it."""
    stored = 0
    for row in read_rows(path):
        layer_text, _, source = str(row.get("layer", "")).partition("-")
        kind = (sources or {}).get(source, source)
        node = parse_node(f"{model or row.get('modelId')}/{kind}/{layer_text}/{row.get('index')}")
        text = row.get("description")
        if not isinstance(text, str) or not text.strip():
            continue
        scores = [s for s in row.get("scores") or [] if isinstance(s, dict)]
        if scores:
            for s in scores:
                method = str(s["explanationScoreTypeName"])
                await store_row(node, method, text, _placeholder(method, s.get("value"), node.kind.is_token_pair))
                stored += 1
        else:
            score = row.get("scoreV1")
            await store_row(node, None, text, _placeholder("neuronpedia", score, node.kind.is_token_pair))
            stored += 1
    return stored
