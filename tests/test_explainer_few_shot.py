"""The explainer's few-shot examples from the served dataset's own well-scored nodes (else the built-in set),
which set was used kept beside the stored explanation, and prompt budgets that never under-count."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.embeddings import DIM, SentenceEmbedder
from neuron_explainer.explanations.explainers import TokenActivationPairExplainer
from neuron_explainer.explanations.few_shot import DatasetFewShot
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.explanations.neuron_prompts import CONTEXT_TOKENS, MESSAGE_OVERHEAD_TOKENS, build_neuron_prompt
from neuron_explainer.explanations.provenance import load_provenance
from neuron_explainer.explanations.search_index import ExplanationIndex, IndexEntry
from neuron_explainer.explanations.splits import train_records
from neuron_explainer.explanations.token_count import Utf8BytesBound, counter_for
from neuron_explainer.jobs import ExplanationWriter, JobManager
from neuron_explainer.models.tokenizer import gpt2_tokenizer
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.datasets import DatasetRegistry, DatasetSpec, method_dataset, record_path
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.reader import RecordReader
from tests.explain_records import neuron_record
from tests.fake_openai import CHAT, FakeOpenAI

pytestmark = pytest.mark.usefixtures("calm_fake")

DATA = DatasetSpec("d", "tiny-gpt2", NodeKind.MLP_NEURON, None, "d/records", "d/explanations")
TARGET = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 0, 1)
OTHERS = {f"tiny-gpt2/mlp_neuron/0/{i}": (f"the animal words, example {i}", 0.3 + 0.1 * i) for i in range(2, 7)}


class _NoModel(SentenceEmbedder):
    """The few-shot source reads the index's entries only: no query is embedded, so no model is needed."""

    async def embed(self, texts: object) -> np.ndarray:  # type: ignore[override]
        raise AssertionError("the few-shot source must not embed")


@pytest.fixture
async def setup(
    tmp_path: Path, fake: tuple[FakeOpenAI, str]
) -> AsyncIterator[tuple[RecordReader, ExplanationIndex, LlmClient]]:
    store = LocalStore(tmp_path)
    for i in range(1, 7):
        await store.put(
            record_path(DATA, 0, i), encode_neuron_record(dataclasses.replace(neuron_record(seed=i), index=i))
        )
    reader = RecordReader(store, DatasetRegistry([DATA]), explanation_methods=MethodRegistry.scorer_names())
    index = ExplanationIndex(store, _NoModel(), refresh_s=0)
    vectors = np.eye(len(OTHERS), DIM, dtype=np.float32)
    await index.add_vectors([IndexEntry(n, t, "baseline", s, "d") for n, (t, s) in OTHERS.items()], vectors)
    llm = LlmClient(LlmSettings(api_key="test", base_url=fake[1], max_retries=0))
    yield reader, index, llm
    await llm.close()


def _few_shot(reader: RecordReader, index: ExplanationIndex, min_score: float = 0.4) -> DatasetFewShot:
    async def load(node_id: str) -> NeuronRecord:
        return (await reader.get_record(NodeId.parse(node_id))).record

    return DatasetFewShot(index, load, min_score=min_score)


async def test_few_shot_from_the_best_scored_other_nodes(
    setup: tuple[RecordReader, ExplanationIndex, LlmClient], fake: tuple[FakeOpenAI, str]
) -> None:
    reader, index, llm = setup
    explainer = TokenActivationPairExplainer(llm, few_shot=_few_shot(reader, index), node=TARGET)
    explained = await explainer.explain((await reader.get_record(TARGET)).record)
    best = ["tiny-gpt2/mlp_neuron/0/6", "tiny-gpt2/mlp_neuron/0/5", "tiny-gpt2/mlp_neuron/0/4"]
    assert explained.provenance["few_shot"] == "dataset" and explained.provenance["few_shot_nodes"] == best
    messages = fake[0].requests[-1][1]["messages"]
    assert [m["content"] for m in messages[2:7:2]] == [f" {OTHERS[n][0]}." for n in best]
    shown = (await reader.get_record(NodeId.parse(best[0]))).record
    assert f"\n{train_records(shown)[0].tokens[0]}\t" in messages[1]["content"]  # its real records are shown


async def test_too_few_good_nodes_fall_back_to_the_built_in_set(
    setup: tuple[RecordReader, ExplanationIndex, LlmClient],
) -> None:
    reader, index, llm = setup
    explainer = TokenActivationPairExplainer(llm, few_shot=_few_shot(reader, index, min_score=0.75), node=TARGET)
    explained = await explainer.explain((await reader.get_record(TARGET)).record)
    assert explained.provenance["few_shot"] == "built-in" and explained.provenance["few_shot_nodes"] == []


async def test_which_set_was_used_is_stored_beside_the_explanation(
    setup: tuple[RecordReader, ExplanationIndex, LlmClient],
) -> None:
    reader, index, llm = setup

    async def load(node: NodeId) -> NeuronRecord:
        return (await reader.get_record(node)).record

    methods = MethodRegistry(llm, few_shot=_few_shot(reader, index))
    manager = JobManager(methods, load, persist=ExplanationWriter(reader))
    job = await manager.explain(TARGET, "baseline", score_method="token-lookup")
    result = await job.wait()
    await manager.close()
    assert result is not None
    stored = await load_provenance(reader.store, method_dataset(DATA, "token-lookup"), TARGET)
    assert stored[result.explanation]["few_shot"] == "dataset"
    assert stored[result.explanation]["token_counter"] in ("utf8-bytes-bound",) or str(
        stored[result.explanation]["token_counter"]
    ).startswith("tiktoken:")
    # the explanation file itself stays in TDB's strict format: no extra keys
    line = (Path(reader.store.root) / "d/explanations/by-method/token-lookup/0/1.jsonl").read_text()  # type: ignore[attr-defined]
    assert set(json.loads(line)["scored_explanations"][0]) == {"explanation", "scored_simulation", "dataclass_name"}


async def test_prompt_budget_never_under_counts() -> None:
    counter = await counter_for("gpt-4o")
    assert counter.name == "utf8-bytes-bound" or counter.name.startswith("tiktoken:")
    tokenizer = gpt2_tokenizer()
    messages, counted = build_neuron_prompt(train_records(neuron_record(length=64)), count=Utf8BytesBound().count)
    real = sum(len(tokenizer.encode(m["content"])) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    assert real <= counted <= CONTEXT_TOKENS
    # a long record: trimmed until the bound (and so the real count) fits
    messages, counted = build_neuron_prompt(train_records(neuron_record(length=400)), count=Utf8BytesBound().count)
    assert counted + 60 <= CONTEXT_TOKENS and messages[-1]["content"].count("<start>") >= 1
    assert sum(len(tokenizer.encode(m["content"])) for m in messages) < counted


async def test_explainer_reports_the_prompt_tokens_it_counted(
    setup: tuple[RecordReader, ExplanationIndex, LlmClient], fake: tuple[FakeOpenAI, str]
) -> None:
    _, _, llm = setup
    if not (await counter_for("gpt-4o")).name.startswith("utf8"):
        pytest.skip("tiktoken is installed here: the count is exact, not the byte bound")
    before = fake[0].count(CHAT)
    explained = await TokenActivationPairExplainer(llm).explain(neuron_record())
    messages = fake[0].requests[-1][1]["messages"]
    assert fake[0].count(CHAT) == before + 1
    assert explained.provenance["prompt_tokens"] == sum(
        len(m["content"].encode()) + MESSAGE_OVERHEAD_TOKENS for m in messages
    )
