"""Several scoring methods in one job: one event log, one stored row per method, one JobCompleted with every
score; bad requests refused before a job exists; a failing method stores nothing. The real JobManager,
ExplanationWriter, RecordReader on a folder, the fake LLM over the openai SDK and the real embedding model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.explanations.search_index import ExplanationIndex
from neuron_explainer.jobs import (
    Completed,
    ExplanationWriter,
    Failed,
    JobKind,
    JobManager,
    JobSpec,
    JobStatus,
    Progress,
    SequenceSimulated,
)
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.datasets import DatasetRegistry, DatasetSpec, record_path
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.reader import RecordReader
from tests.fake_openai import CHAT, FakeOpenAI
from tests.scorer_records import cat_neuron

pytestmark = pytest.mark.usefixtures("calm_fake")

DATA = DatasetSpec("cats", "tiny-gpt2", NodeKind.MLP_NEURON, None, "cats/records", "cats/explanations")
CAT = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 0, 7)
FEW = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 0, 8)
"""Three random records only: too few non-activating records for the classifier scorers."""
FOUR = ["token-lookup", "detection", "fuzzing", "embedding"]


@pytest.fixture
async def setup(
    tmp_path: Path, fake: tuple[FakeOpenAI, str], embedder: SentenceEmbedder
) -> AsyncIterator[tuple[JobManager, RecordReader, ExplanationIndex]]:
    store = LocalStore(tmp_path)
    await store.put(record_path(DATA, 0, 7), encode_neuron_record(cat_neuron()))
    few = cat_neuron(n_random=3)
    await store.put(
        record_path(DATA, 0, 8),
        encode_neuron_record(NeuronRecord(0, 8, few.most_positive_activation_records, few.random_sample)),
    )
    reader = RecordReader(store, DatasetRegistry([DATA]), explanation_methods=MethodRegistry.scorer_names())
    llm = LlmClient(LlmSettings(api_key="test", base_url=fake[1], max_retries=0))
    index = ExplanationIndex(store, embedder, refresh_s=0)

    async def load(node: NodeId) -> NeuronRecord:
        return (await reader.get_record(node)).record

    manager = JobManager(MethodRegistry(llm, embedder=embedder), load, persist=ExplanationWriter(reader, index))
    yield manager, reader, index
    await manager.close()
    await llm.close()


async def test_four_methods_one_job_one_row_each(setup: tuple[JobManager, RecordReader, ExplanationIndex]) -> None:
    manager, reader, index = setup
    job = await manager.score(CAT, "the word cat", FOUR)
    result = await job.wait()
    assert job.status is JobStatus.COMPLETED and result is not None
    assert {r.method: r.score for r in result.scores} == {
        "token-lookup": pytest.approx(1.0),
        "detection": 1.0,
        "fuzzing": 1.0,
        "embedding": pytest.approx(result.scores[3].score),
    }
    events = await manager.log.snapshot(job.id)
    completed = [e for e in events if isinstance(e, Completed)]
    assert len(completed) == 1 and list(completed[0].scores or {}) == FOUR and completed[0].score == result.score
    sequences = [e for e in events if isinstance(e, SequenceSimulated)]
    planned = {m: manager.methods.scorer(m, CAT.kind).planned_sequences(cat_neuron(), None) for m in FOUR}
    assert {m: sum(1 for s in sequences if s.method == m) for m in FOUR} == planned
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[0].done == 0 and progress[-1].done == progress[-1].total == sum(planned.values())
    stored = await reader.get_explanations(CAT)
    assert sorted((e.method, e.text) for e in stored) == sorted((m, "the word cat") for m in FOUR)
    assert {e.method: e.score for e in stored} == {r.method: r.score for r in result.scores}
    (hit,) = await index.search("cats", first=1)
    assert hit.node == str(CAT) and set(hit.scores) == set(FOUR)


async def test_the_same_methods_give_the_same_job(setup: tuple[JobManager, RecordReader, ExplanationIndex]) -> None:
    manager, _, _ = setup
    first = await manager.score(CAT, "the word cat", ["token-lookup", "embedding"])
    assert (await manager.score(CAT, "the word cat", ["token-lookup", "embedding"])).id == first.id
    single = await manager.score(CAT, "the word cat", "token-lookup")
    assert single.id != first.id  # one method keeps the id it always had
    assert single.id == JobSpec(JobKind.SCORE, CAT, "token-lookup", explanation="the word cat").key()
    await first.wait()
    await single.wait()


@pytest.mark.parametrize(
    ("node", "methods", "words"),
    [
        (CAT, [], "methods is empty"),
        (CAT, ["detection", "magic"], "unknown scoring method 'magic'"),
        (CAT, ["embedding", "embedding"], "embedding more than once"),
        (FEW, ["token-lookup", "detection"], "needs at least 5 non-activating records"),
    ],
)
async def test_bad_requests_fail_before_a_job_exists(
    setup: tuple[JobManager, RecordReader, ExplanationIndex], node: NodeId, methods: list[str], words: str
) -> None:
    manager, reader, _ = setup
    with pytest.raises(BadInput, match=words):
        await manager.score(node, "the word cat", methods)
    assert manager._jobs == {} and await reader.get_explanations(node) == []


async def test_a_failing_method_fails_the_job_and_stores_nothing(
    setup: tuple[JobManager, RecordReader, ExplanationIndex], fake: tuple[FakeOpenAI, str]
) -> None:
    manager, reader, index = setup
    fake[0].inject(CHAT, *["malformed"] * 40)
    job = await manager.score(CAT, "the word cat", ["embedding", "detection"])
    assert await job.wait() is None and job.status is JobStatus.FAILED
    failed = (await manager.log.snapshot(job.id))[-1]
    assert isinstance(failed, Failed) and failed.code == "LLM_BAD_REPLY" and "method detection" in failed.message
    assert await reader.get_explanations(CAT) == [] and len(index) == 0
