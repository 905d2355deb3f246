"""Job results stored per scoring method, in TDB's strict format, and read back with their method:
the real JobManager, token-lookup scorer, RecordReader and stores (a folder and Azurite)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput, NotFound
from neuron_explainer.explanations.codec import decode_explanations, encode_explanations
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.explanations.results import (
    AttentionSimulationResults,
    NeuronSimulationResults,
    ScoredExplanation,
    ScoredSimulation,
)
from neuron_explainer.jobs import ExplanationWriter, JobManager
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import (
    DatasetRegistry,
    DatasetSpec,
    explanation_path,
    live_dataset,
    method_dataset,
    record_path,
)
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.reader import RecordReader
from tests.explain_records import head_record, neuron_record

MINE = DatasetSpec("mine", "gpt2-small", NodeKind.MLP_NEURON, None, "mine/records", "mine/explanations")
HEADS = DatasetSpec("heads", "gpt2-small", NodeKind.ATTENTION_HEAD, None, "heads/records", "heads/explanations")
NEURON = NodeId("gpt2-small", NodeKind.MLP_NEURON, 0, 1)
HEAD = NodeId("gpt2-small", NodeKind.ATTENTION_HEAD, 0, 1)
LIVE = NodeId("gpt2-small", NodeKind.MLP_NEURON, 3, 7)
"""Of a kind MINE covers, but MINE has no record of it: the "live" loader below supplies one."""
LIVE_ELSEWHERE = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 1, 7)
"""No dataset covers its model at all."""


@pytest.fixture(params=["local", "azure"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    s: BlobStore
    if request.param == "local":
        s = LocalStore(tmp_path)
    else:
        s = AzureStore(f"w-{uuid.uuid4().hex[:16]}", "", connection_string=request.getfixturevalue("azurite"))
    await s.put(record_path(MINE, 0, 1), encode_neuron_record(neuron_record()))
    await s.put(record_path(HEADS, 0, 1), encode_neuron_record(head_record()))
    yield s
    await s.close()


def _reader(store: BlobStore) -> RecordReader:
    registry = DatasetRegistry([MINE, HEADS])
    return RecordReader(store, registry, explanation_methods=MethodRegistry.scorer_names())


def _manager(reader: RecordReader) -> JobManager:
    async def load(node: NodeId) -> NeuronRecord:
        try:
            return (await reader.get_record(node)).record
        except NotFound:
            if node not in (LIVE, LIVE_ELSEWHERE):
                raise
            return neuron_record()  # stands in for a live forward pass

    return JobManager(MethodRegistry(None), load, persist=ExplanationWriter(reader))


def _keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


async def test_scores_land_in_the_method_folder_without_a_method_key(store: BlobStore) -> None:
    reader = _reader(store)
    await store.put(
        explanation_path(MINE, 0, 1),
        encode_explanations(NeuronSimulationResults(0, 1, [ScoredExplanation("old", ScoredSimulation([], 0.5))])),
    )
    jobs = _manager(reader)
    job = await jobs.score(NEURON, "cat", "token-lookup")
    result = await job.wait()
    assert result is not None and result.score is not None

    raw = await store.get("mine/explanations/by-method/token-lookup/0/1.jsonl")
    assert raw is not None and raw.count(b"\n") == 1 and raw.endswith(b"\n")
    assert "method" not in _keys(json.loads(raw))
    stored = decode_explanations(raw, "x")
    assert isinstance(stored, NeuronSimulationResults) and (stored.layer, stored.index) == (0, 1)
    assert [e.explanation for e in stored.scored_explanations] == ["cat"]

    shown = [(e.text, e.dataset, e.method, e.score) for e in await reader.get_explanations(NEURON)]
    assert shown == [
        ("old", "mine", None, 0.5),
        ("cat", "mine/by-method/token-lookup", "token-lookup", pytest.approx(result.score)),
    ]

    again = await jobs.score(NEURON, "cat", "token-lookup", max_sequences=3)  # other inputs, same text
    assert await again.wait() is not None
    texts = [e.text for e in await reader.get_explanations(NEURON) if e.method == "token-lookup"]
    assert texts == ["cat"]  # rescoring a text replaces its row


async def test_heads_are_stored_as_attention_results(store: BlobStore) -> None:
    reader = _reader(store)
    job = await _manager(reader).score(HEAD, "cat", "token-lookup")
    assert await job.wait() is not None
    raw = await store.get("heads/explanations/by-method/token-lookup/0/1.jsonl")
    assert raw is not None
    stored = decode_explanations(raw, "x")
    assert isinstance(stored, AttentionSimulationResults)
    assert [e.explanation for e in stored.scored_explanations] == ["cat"]


@pytest.mark.parametrize(
    "node,blob,dataset",
    [
        (LIVE, "mine/explanations/by-method/token-lookup/3/7.jsonl", "mine/by-method/token-lookup"),
        (
            LIVE_ELSEWHERE,
            "live-explanations/tiny-gpt2/mlp_neuron/by-method/token-lookup/1/7.jsonl",
            "tiny-gpt2/mlp_neuron/live/by-method/token-lookup",
        ),
    ],
    ids=["dataset-without-the-node", "no-dataset"],
)
async def test_a_node_scored_on_live_records_is_stored_where_it_is_read(
    store: BlobStore, node: NodeId, blob: str, dataset: str
) -> None:
    reader = _reader(store)
    job = await _manager(reader).explain(node, "top-tokens", score_method="token-lookup")
    result = await job.wait()
    assert result is not None
    assert await store.get(blob) is not None
    shown = await reader.get_explanations(node)
    assert [(e.text, e.dataset, e.method) for e in shown] == [(result.explanation, dataset, "token-lookup")]


async def test_an_explanation_that_was_not_scored_is_not_stored(store: BlobStore) -> None:
    reader = _reader(store)
    job = await _manager(reader).explain(NEURON, "top-tokens")
    assert await job.wait() is not None
    assert await reader.get_explanations(NEURON) == []


def test_method_datasets_and_the_index_format() -> None:
    spec = method_dataset(MINE, "baseline")
    assert (spec.name, spec.explanations_path, spec.records_path, spec.method) == (
        "mine/by-method/baseline",
        "mine/explanations/by-method/baseline",
        "mine/records",
        "baseline",
    )
    assert "method" not in MINE.to_json()  # index blobs keep the builder's format
    assert DatasetSpec.from_json(spec.to_json()) == spec
    for bad in ("a/b", "..", ""):
        with pytest.raises(BadInput):
            method_dataset(MINE, bad)
    registry = DatasetRegistry([MINE])
    assert [d.name for d in registry.explanation_datasets(NEURON, ["baseline"])] == [
        "mine",
        "mine/by-method/baseline",
    ]
    assert registry.explanation_datasets(LIVE, []) == registry.explanation_datasets(
        NodeId("gpt2-small", NodeKind.MLP_NEURON, 3, 7)
    )
    assert live_dataset(HEAD).explanations_path == "live-explanations/gpt2-small/attention_head"


async def test_many_results_for_one_node_are_written_once_per_flush(store: BlobStore) -> None:
    """40 jobs scoring one node: every result lands, in far fewer writes than results (each write rewrites
    the node's whole file, so one per result would be quadratic in bytes)."""
    reader = _reader(store)
    jobs = _manager(reader)
    writer = jobs._persist
    assert isinstance(writer, ExplanationWriter)
    started = [await jobs.score(NEURON, f"pattern {i}", "token-lookup") for i in range(40)]
    results = await asyncio.gather(*(job.wait() for job in started))
    assert all(r is not None for r in results)
    texts = {e.text for e in await reader.get_explanations(NEURON) if e.method == "token-lookup"}
    assert texts == {f"pattern {i}" for i in range(40)}
    assert 1 <= writer.writes <= 10, writer.writes
