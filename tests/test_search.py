"""The explanation search index: kept in the store (folder and Azurite), shared by every index on that
store, exact cosine search with the real local embedding model, built incrementally and compacted."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neuron_explainer.errors import BadInput
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.explanations.search_index import ExplanationIndex, IndexEntry
from neuron_explainer.storage.base import BlobStore

EXPLANATIONS = {
    "tiny-gpt2/mlp_neuron/0/1": "French words and phrases",
    "tiny-gpt2/mlp_neuron/0/2": "numbers in calendar dates",
    "tiny-gpt2/mlp_neuron/1/3": "Python keywords such as def and import",
    "tiny-gpt2/ae-tiny-mlp/1/4": "the French language, words like le and la",
    "tiny-gpt2/attention_head/1/0": "attends to the previous token",
}


def _entries(method: str = "baseline", score: float = 0.5) -> list[IndexEntry]:
    return [IndexEntry(node, text, method, score, "demo") for node, text in EXPLANATIONS.items()]


async def test_search_finds_the_explanation_written_for_a_node_first(
    store: BlobStore, embedder: SentenceEmbedder
) -> None:
    index = ExplanationIndex(store, embedder, refresh_s=0)
    await index.add(_entries())
    hits = await index.search("French", first=2)
    assert [h.node for h in hits] == ["tiny-gpt2/mlp_neuron/0/1", "tiny-gpt2/ae-tiny-mlp/1/4"] or [
        h.node for h in hits
    ] == ["tiny-gpt2/ae-tiny-mlp/1/4", "tiny-gpt2/mlp_neuron/0/1"]
    assert hits[0].similarity > hits[1].similarity - 1e-6 and hits[0].method == "baseline"
    (python,) = await index.search("programming language source code", first=1)
    assert python.node == "tiny-gpt2/mlp_neuron/1/3"
    # exact: the similarity is the dot product of the two unit embeddings
    vectors = await embedder.embed(["programming language source code", EXPLANATIONS[python.node]])
    assert python.similarity == pytest.approx(float(vectors[0] @ vectors[1]), abs=1e-5)


async def test_filters_by_model_kind_and_layer(store: BlobStore, embedder: SentenceEmbedder) -> None:
    index = ExplanationIndex(store, embedder, refresh_s=0)
    await index.add(_entries())
    assert [h.node for h in await index.search("French", first=5, kind="ae-tiny-mlp")] == ["tiny-gpt2/ae-tiny-mlp/1/4"]
    assert {h.node for h in await index.search("French", first=5, layer=0)} == {
        "tiny-gpt2/mlp_neuron/0/1",
        "tiny-gpt2/mlp_neuron/0/2",
    }
    assert await index.search("French", first=5, model="gpt2-small") == []
    assert await index.search("French", first=5, method="detection") == []


async def test_every_index_on_the_store_sees_the_same_entries(store: BlobStore, embedder: SentenceEmbedder) -> None:
    writer = ExplanationIndex(store, embedder, refresh_s=0)
    reader = ExplanationIndex(store, embedder, refresh_s=0)
    assert await reader.search("French", first=3) == []
    await writer.add(_entries()[:2])
    await writer.add(_entries("detection", 0.9)[:1])
    (hit,) = await reader.search("French", first=1)
    assert hit.node == "tiny-gpt2/mlp_neuron/0/1" and hit.scores == {"baseline": 0.5, "detection": 0.9}
    assert hit.method == "baseline" and hit.score == 0.5  # simulation first when a text has several
    (detected,) = await reader.search("French", first=1, method="detection")
    assert detected.score == 0.9 and len(reader) == 2


async def test_rescoring_replaces_the_score_and_compaction_keeps_everything(
    store: BlobStore, embedder: SentenceEmbedder
) -> None:
    index = ExplanationIndex(store, embedder, refresh_s=0, compact_at=3)
    for score in (0.1, 0.2, 0.3, 0.4):
        await index.add(_entries(score=score)[:1])
    await index.add(_entries()[1:])
    manifest = json.loads(await store.get(index.manifest_path) or b"{}")
    assert len(manifest["segments"]) < 3  # merged at 3
    fresh = ExplanationIndex(store, embedder, refresh_s=0)
    hits = await fresh.search("French", first=5)
    assert len(fresh) == len(EXPLANATIONS) and len(hits) == 5
    assert next(h for h in hits if h.node == "tiny-gpt2/mlp_neuron/0/1").score == 0.4  # the newest


async def test_bad_search_input(store: BlobStore, embedder: SentenceEmbedder) -> None:
    index = ExplanationIndex(store, embedder)
    for text, first, words in [("  ", 10, "empty"), ("French", 0, "1..100"), ("French", 101, "1..100")]:
        with pytest.raises(BadInput, match=words):
            await index.search(text, first)


async def test_add_vectors_is_the_same_index_without_the_model(store: BlobStore, embedder: SentenceEmbedder) -> None:
    """The bench builds 100k entries this way; the search path is the one users hit."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = ExplanationIndex(store, embedder, refresh_s=0)
    await index.add_vectors(
        [IndexEntry(f"m/mlp_neuron/0/{i}", f"text {i}", "baseline", 0.1, "d") for i in range(50)], vectors
    )
    assert len(ExplanationIndex(store, embedder, refresh_s=0)) == 0
    other = ExplanationIndex(store, embedder, refresh_s=0)
    await other.refresh()
    assert len(other) == 50
