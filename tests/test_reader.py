"""RecordReader over a real folder and real Azurite: dataset order, misses, corrupt blobs, the record
cache and its de-duplication, explanations across datasets and the compare-and-swap update."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.errors import BadInput, CorruptBlob, NotFound
from neuron_explainer.explanations.codec import encode_explanations
from neuron_explainer.explanations.results import (
    AttentionSimulationResults,
    NeuronSimulationResults,
    ScoredAttentionExplanation,
    ScoredAttentionSimulation,
    ScoredExplanation,
    ScoredSimulation,
)
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetRegistry, DatasetSpec, explanation_path, record_path
from neuron_explainer.storage.reader import ExplanationResults, RecordReader

MLP = NodeKind.MLP_NEURON
MINE = DatasetSpec("mine", "gpt2-small", MLP, None, "mine/records", "mine/explanations")
PUBLIC = DatasetRegistry.default().get("gpt2-small/mlp_post_act")
HEADS = DatasetRegistry.default().get("gpt2-small/attn_write_norm")


def _record(layer: int, index: int, peak: float) -> NeuronRecord:
    top = [ActivationRecord(["The", " cat", " sat"], [0.0, peak, peak / 2]) for _ in range(3)]
    return NeuronRecord(layer, index, top, [ActivationRecord([" a"], [0.1])], mean=0.5, variance=1.0)


def _explained(layer: int, index: int, *texts: str, method: str | None = None) -> NeuronSimulationResults:
    scored = [
        ScoredExplanation(t, ScoredSimulation([], ev_correlation_score=0.1 * (i + 1)), method=method)
        for i, t in enumerate(texts)
    ]
    return NeuronSimulationResults(layer, index, scored)


def _reader(store: BlobStore, **kwargs: int) -> RecordReader:
    return RecordReader(store, DatasetRegistry.default().with_datasets([MINE]), **kwargs)


async def test_the_first_dataset_that_has_the_node_wins(store: BlobStore) -> None:
    await store.put(record_path(PUBLIC, 5, 131), encode_neuron_record(_record(5, 131, 2.0)))
    await store.put(record_path(PUBLIC, 5, 132), encode_neuron_record(_record(5, 132, 3.0)))
    await store.put(record_path(MINE, 5, 132), encode_neuron_record(_record(5, 132, 9.0)))
    reader = _reader(store)
    only_public = await reader.get_record(NodeId("gpt2-small", MLP, 5, 131))
    assert (only_public.dataset, only_public.record) == (PUBLIC, _record(5, 131, 2.0))
    both = await reader.get_record(NodeId("gpt2-small", MLP, 5, 132))
    assert (both.dataset, both.record.max_activation) == (MINE, 9.0)


async def test_a_node_no_dataset_has_is_not_found_naming_every_blob(store: BlobStore) -> None:
    reader = _reader(store)
    with pytest.raises(NotFound) as failure:
        await reader.get_record(NodeId("gpt2-small", MLP, 3, 7))
    tried = failure.value.fields["tried"]
    assert tried == [
        f"{store.location.rstrip('/')}/mine/records/3/7.json",
        f"{store.location.rstrip('/')}/gpt2_small_data/collated-activations/3/7.json",
    ]
    with pytest.raises(NotFound, match="no dataset holds mlp_neuron records of tiny-gpt2"):
        await reader.get_record(NodeId("tiny-gpt2", MLP, 0, 0))


async def test_a_corrupt_blob_is_named_and_not_cached(store: BlobStore) -> None:
    node = NodeId("gpt2-small", MLP, 0, 99)
    await store.put(record_path(MINE, 0, 99), b'{"most_positive_activation_records": [{"tokens": 1}]')
    reader = _reader(store)
    with pytest.raises(CorruptBlob) as failure:
        await reader.get_record(node)
    assert failure.value.fields["blob"] == f"{store.location.rstrip('/')}/mine/records/0/99.json"
    await store.put(record_path(MINE, 0, 99), encode_neuron_record(_record(0, 99, 1.0)))
    assert (await reader.get_record(node)).record == _record(0, 99, 1.0)


async def test_concurrent_reads_of_one_node_read_its_blob_once_then_hit_the_cache(store: BlobStore) -> None:
    await store.put(record_path(MINE, 1, 1), encode_neuron_record(_record(1, 1, 4.0)))
    reader = _reader(store)
    node = NodeId("gpt2-small", MLP, 1, 1)
    got = await asyncio.gather(*(reader.get_record(node) for _ in range(10)))
    assert {g.record.max_activation for g in got} == {4.0}
    assert reader.records.loads == 1
    await reader.get_record(node)
    assert reader.records.loads == 1 and reader.records.hits >= 1


async def test_the_record_cache_is_bounded_by_bytes(store: BlobStore) -> None:
    blob = encode_neuron_record(_record(2, 0, 1.0))
    reader = _reader(store, cache_bytes=len(blob) * 4 * 2 + 10)  # room for two decoded records
    for i in range(4):
        await store.put(record_path(MINE, 2, i), encode_neuron_record(_record(2, i, 1.0)))
        await reader.get_record(NodeId("gpt2-small", MLP, 2, i))
    assert len(reader.records) == 2 and reader.records.evictions == 2
    assert reader.records.bytes_used <= reader.records.max_bytes


async def test_explanations_from_every_dataset_in_order(store: BlobStore) -> None:
    await store.put(explanation_path(MINE, 4, 4), encode_explanations(_explained(4, 4, "cats", method="top-tokens")))
    legacy = (
        b'{"neuron_id": {"layer_index": "4", "neuron_index": 4}, "scored_explanation_or_baseline_list": ['
        b'{"explanation_or_baseline": "felines", "scored_simulation": '
        b'{"scored_sequence_simulations": [], "ev_correlation_score": NaN}}]}\n'
    )
    await store.put(explanation_path(PUBLIC, 4, 4), legacy)
    got = await _reader(store).get_explanations(NodeId("gpt2-small", MLP, 4, 4))
    assert [(e.text, e.score, e.dataset, e.method) for e in got] == [
        ("cats", pytest.approx(0.1), "mine", "top-tokens"),
        ("felines", None, "gpt2-small/mlp_post_act", None),
    ]
    assert await _reader(store).get_explanations(NodeId("gpt2-small", MLP, 4, 5)) == []


async def test_attention_explanations_use_the_roc_auc_score(store: BlobStore) -> None:
    results = AttentionSimulationResults(
        3,
        2,
        [ScoredAttentionExplanation("attends to the previous token", ScoredAttentionSimulation([], 0.8))],
    )
    await store.put(explanation_path(HEADS, 3, 2), encode_explanations(results))
    got = await _reader(store).get_explanations(NodeId("gpt2-small", NodeKind.ATTENTION_HEAD, 3, 2))
    assert [(e.text, e.score, e.dataset) for e in got] == [
        ("attends to the previous token", 0.8, "gpt2-small/attn_write_norm")
    ]


async def test_explanations_filed_under_the_wrong_node_are_corrupt(store: BlobStore) -> None:
    await store.put(explanation_path(MINE, 6, 6), encode_explanations(_explained(6, 7, "misfiled")))
    with pytest.raises(CorruptBlob, match="layer 6 index 7"):
        await _reader(store).get_explanations(NodeId("gpt2-small", MLP, 6, 6))


async def test_twenty_concurrent_updates_lose_no_explanation(store: BlobStore) -> None:
    node = NodeId("gpt2-small", MLP, 7, 7)
    reader = _reader(store)
    assert await reader.get_explanations(node) == []  # caches the miss (for the TTL)

    def adding(text: str) -> Callable[[ExplanationResults | None], ExplanationResults]:
        def mutate(current: ExplanationResults | None) -> ExplanationResults:
            base = current if isinstance(current, NeuronSimulationResults) else _explained(7, 7)
            return dataclasses.replace(
                base,
                scored_explanations=[*base.scored_explanations, *_explained(7, 7, text).scored_explanations],
            )

        return mutate

    await asyncio.gather(*(reader.update_explanations(node, MINE, adding(f"e{i}")) for i in range(20)))
    texts = [e.text for e in await reader.get_explanations(node)]  # our own write invalidated the cache
    assert sorted(texts) == sorted(f"e{i}" for i in range(20))
    with pytest.raises(BadInput):
        await reader.update_explanations(NodeId("gpt2-small", MLP, 7, 8), HEADS, adding("x"))
