"""Explainers, simulators and the LLM client, through the real openai SDK against the fake server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from neuron_explainer.errors import LlmBadReply, UpstreamUnavailable
from neuron_explainer.explanations.attention_scoring import AttentionPairScorer, LlmPairPredictor
from neuron_explainer.explanations.explainers import AttentionHeadExplainer, TokenActivationPairExplainer
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.scoring import simulate_and_score
from neuron_explainer.explanations.simulators import AllAtOnceSimulator, LogprobFreeSimulator
from neuron_explainer.explanations.splits import valid_records
from tests.explain_records import head_record, neuron_record
from tests.fake_openai import CHAT, COMPLETIONS, FakeOpenAI, serve

TOKENS = [" The", " cat", " sat", " on", " the", " dog", "."]


@pytest.fixture(scope="module")
async def fake_url() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with serve(fake) as url:
        yield fake, url


@pytest.fixture
async def fake(fake_url: tuple[FakeOpenAI, str]) -> AsyncIterator[FakeOpenAI]:
    server, _ = fake_url
    server.faults.clear()
    server.requests.clear()
    server.latency_s, server.slow_s, server.reject_json_mode = 0.0, 5.0, False
    while server.in_flight:  # a timed-out request of an earlier test still sleeping on the server
        await asyncio.sleep(0.02)
    server.max_in_flight = 0
    yield server


@pytest.fixture
async def llm(fake: FakeOpenAI, fake_url: tuple[FakeOpenAI, str]) -> AsyncIterator[LlmClient]:
    client = LlmClient(
        LlmSettings(
            api_key="test",
            base_url=fake_url[1],
            max_retries=3,
            timeout_s=2.0,
            backoff_initial_s=0.01,
            backoff_max_s=0.05,
        )
    )
    yield client
    await client.close()


def test_no_key_builds_nothing() -> None:
    assert LlmClient.from_settings(LlmSettings(api_key=None)) is None
    assert LlmClient.from_settings(LlmSettings(api_key="")) is None


async def test_neuron_explainer_shows_train_split_on_0_10_scale(llm: LlmClient, fake: FakeOpenAI) -> None:
    record = neuron_record()
    explanation = (await TokenActivationPairExplainer(llm).explain(record)).text
    assert explanation == "the words cat, dog" or explanation == "the words dog, cat"
    ((path, body),) = fake.requests
    target = body["messages"][-1]["content"]
    assert path == CHAT and body["model"] == "gpt-4o" and body["max_tokens"] == 60
    assert target.count("<start>") == 5 and target.endswith("this neuron activates for")
    values = [int(line.rsplit("\t", 1)[1]) for line in target.splitlines() if "\t" in line]
    assert max(values) == 10 and min(values) == 0
    assert [m["role"] for m in body["messages"]] == ["system"] + ["user", "assistant"] * 3 + ["user"]


async def test_explainer_trims_few_shot_to_the_context_budget(llm: LlmClient, fake: FakeOpenAI) -> None:
    long_record = neuron_record(length=400)
    await TokenActivationPairExplainer(llm).explain(long_record)
    messages = fake.requests[-1][1]["messages"]
    assert sum(len(m["content"]) for m in messages) // 4 + 60 < 4097
    assert messages[-1]["content"].count("<start>") >= 1


async def test_attention_explainer_marks_pairs(llm: LlmClient, fake: FakeOpenAI) -> None:
    explanation = (await AttentionHeadExplainer(llm).explain(head_record())).text
    assert explanation == "attends to the words cat"
    target = fake.requests[-1][1]["messages"][-1]["content"]
    assert target.count("**cat**") == 5 and target.count("<|sequence_separator|>") == 4 and "[[" in target


async def test_logprob_free_simulator_valid_reply(llm: LlmClient, fake: FakeOpenAI) -> None:
    simulation = await LogprobFreeSimulator(llm).simulate("cat and dog", TOKENS)
    assert simulation.expected_activations == [0, 10, 0, 0, 0, 10, 0]
    assert fake.requests[0][1]["response_format"] == {"type": "json_object"}
    assert fake.requests[0][1]["temperature"] == 0


@pytest.mark.parametrize("bad", ["malformed", "short"])
async def test_malformed_then_valid_is_reasked(llm: LlmClient, fake: FakeOpenAI, bad: str) -> None:
    fake.inject(CHAT, bad)
    simulation = await LogprobFreeSimulator(llm).simulate("cat", TOKENS)
    assert simulation.expected_activations == [0, 10, 0, 0, 0, 0, 0]
    assert fake.count(CHAT) == 2
    reask = fake.requests[1][1]["messages"][-1]["content"]
    assert "exactly 7 entries" in reask


async def test_malformed_beyond_retries_fails_never_zero_filled(llm: LlmClient, fake: FakeOpenAI) -> None:
    fake.inject(CHAT, "malformed", "short", "malformed")
    with pytest.raises(LlmBadReply) as caught:
        await LogprobFreeSimulator(llm, max_reasks=2).simulate("cat", TOKENS)
    assert caught.value.code == "LLM_BAD_REPLY" and fake.count(CHAT) == 3


async def test_429_and_500_are_retried(llm: LlmClient, fake: FakeOpenAI) -> None:
    fake.inject(CHAT, "429", "500", "429")
    simulation = await LogprobFreeSimulator(llm).simulate("dog", TOKENS)
    assert simulation.expected_activations[5] == 10 and fake.count(CHAT) == 4


async def test_retries_exhausted_is_upstream_unavailable(llm: LlmClient, fake: FakeOpenAI) -> None:
    fake.inject(CHAT, "500", "500", "500", "500")
    with pytest.raises(UpstreamUnavailable) as caught:
        await LogprobFreeSimulator(llm).simulate("dog", TOKENS)
    assert caught.value.fields["status"] == 500 and fake.count(CHAT) == 4


async def test_400_fails_at_once(llm: LlmClient, fake: FakeOpenAI) -> None:
    fake.inject(CHAT, "400")
    with pytest.raises(UpstreamUnavailable) as caught:
        await TokenActivationPairExplainer(llm).explain(neuron_record())
    assert caught.value.fields["status"] == 400 and fake.count(CHAT) == 1


async def test_slow_reply_times_out_and_is_retried(fake: FakeOpenAI, fake_url: tuple[FakeOpenAI, str]) -> None:
    fake.slow_s = 1.0
    fake.inject(CHAT, "slow")
    client = LlmClient(LlmSettings(api_key="k", base_url=fake_url[1], timeout_s=0.3, backoff_initial_s=0.01))
    try:
        simulation = await LogprobFreeSimulator(client).simulate("cat", TOKENS)
    finally:
        await client.close()
    assert simulation.expected_activations[1] == 10 and fake.count(CHAT) == 2


async def test_endpoint_without_json_mode_falls_back(llm: LlmClient, fake: FakeOpenAI) -> None:
    fake.reject_json_mode = True
    for _ in range(2):
        simulation = await LogprobFreeSimulator(llm).simulate("cat", TOKENS)
        assert simulation.expected_activations[1] == 10
    assert ["response_format" in body for _, body in fake.requests] == [True, False, False]


async def test_all_at_once_reads_prompt_logprobs(llm: LlmClient, fake: FakeOpenAI) -> None:
    simulation = await AllAtOnceSimulator(llm).simulate("cat", TOKENS)
    assert simulation.expected_activations[1] == pytest.approx(9.0)
    assert simulation.expected_activations[0] == pytest.approx(0.1)
    assert simulation.distribution_values[1] == [0.0, 10.0]
    ((path, body),) = fake.requests
    assert path == COMPLETIONS and body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 15


async def test_all_at_once_without_logprobs_fails(llm: LlmClient, fake: FakeOpenAI) -> None:
    fake.inject(COMPLETIONS, "malformed")
    with pytest.raises(LlmBadReply):
        await AllAtOnceSimulator(llm).simulate("cat", TOKENS)


async def test_simulate_and_score_records_concurrently(llm: LlmClient, fake: FakeOpenAI) -> None:
    record = neuron_record()
    records = valid_records(record)
    fake.latency_s = 0.05
    scored = await simulate_and_score(LogprobFreeSimulator(llm), "cat dog", records, concurrency=4)
    assert len(scored.scored_sequence_simulations) == 10 and scored.ev_correlation_score is not None
    assert scored.ev_correlation_score > 0.9 and fake.max_in_flight == 4


async def test_attention_one_at_a_time_roc_auc(llm: LlmClient, fake: FakeOpenAI) -> None:
    record = head_record()
    scored = await AttentionPairScorer(LlmPairPredictor(llm)).score(
        "attends to cat from later tokens", valid_records(record), record.max_activation
    )
    labels = [s.token_pair_label for s in scored.attention_simulations]
    assert labels == [1] * 5 + [0] * 5
    assert scored.roc_auc_score == 1.0
    body = fake.requests[0][1]
    assert body["logprobs"] is True and body["top_logprobs"] == 15 and body["max_tokens"] == 1


async def test_faults_and_latency_settable_over_http(
    llm: LlmClient, fake: FakeOpenAI, fake_url: tuple[FakeOpenAI, str]
) -> None:
    admin = fake_url[1].removesuffix("/v1")
    async with httpx.AsyncClient() as http:
        assert (
            await http.post(f"{admin}/admin/faults", json={"path": CHAT, "faults": ["429", "malformed"]})
        ).is_success
        assert (await http.post(f"{admin}/admin/latency", json={"seconds": 0.01})).is_success
    simulation = await LogprobFreeSimulator(llm).simulate("cat", TOKENS)
    assert simulation.expected_activations[1] == 10 and fake.count(CHAT) == 3 and fake.latency_s == 0.01
