"""Explain and score jobs through the real server: GraphQL mutations over HTTP, ``jobEvents`` over a real
WebSocket (graphql-transport-ws, the ``gql`` client), records and results on Azurite, and the LLM
faked at its HTTP boundary (``FakeOpenAI`` on loopback, in a thread so the server process can call it).

Three servers share one Azurite container: one with an LLM key, one with none (``--neuron_method
top-tokens``) and one whose LLM endpoint is a closed port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from azure.storage.blob import BlobServiceClient
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.codec import decode_explanations
from neuron_explainer.explanations.results import AttentionSimulationResults, NeuronSimulationResults
from neuron_explainer.nodes import NodeKind
from neuron_explainer.storage.datasets import INDEX_BLOB, DatasetSpec, encode_index
from tests.explain_records import head_record, neuron_record, silent_record
from tests.fake_openai import CHAT, FakeOpenAI
from tests.server import ServerProcess, error_codes, free_port

CONTAINER = "jobs"
MLP = DatasetSpec("tiny-mlp", "tiny-gpt2", NodeKind.MLP_NEURON, None, "tiny/mlp/records", "tiny/mlp/explanations")
HEADS = DatasetSpec(
    "tiny-heads", "tiny-gpt2", NodeKind.ATTENTION_HEAD, None, "tiny/heads/records", "tiny/heads/explanations"
)
NEURON = "tiny-gpt2/mlp_neuron/0/1"
SILENT = "tiny-gpt2/mlp_neuron/0/2"
CROWDED = "tiny-gpt2/mlp_neuron/0/3"
"""The node the 20 concurrent jobs write to (no other test writes there)."""
HEAD = "tiny-gpt2/attention_head/0/1"
NEURON_RECORD = neuron_record()
LLM_FLAGS = ["--llm_max_retries", "2", "--llm_backoff_s", "0.05", "--llm_concurrency", "4"]

JOB_FIELDS = "id status kind method node { id } result { explanation score method } error { code message }"
SCORE = f"mutation($input: ScoreExplanationInput!) {{ scoreExplanation(input: $input) {{ {JOB_FIELDS} }} }}"
EXPLAIN = f"mutation($input: ExplainNodeInput!) {{ explainNode(input: $input) {{ {JOB_FIELDS} }} }}"
EVENT_FIELDS = """
  __typename seq
  ... on ExplanationProduced { text }
  ... on SequenceSimulated { index tokens predicted actual sequenceScore runningScore }
  ... on JobProgress { done total }
  ... on JobCompleted { explanation score }
  ... on JobFailed { code message }
"""
SUBSCRIBE = f"subscription($id: ID!, $after: Int) {{ jobEvents(jobId: $id, after: $after) {{ {EVENT_FIELDS} }} }}"
JOB = f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} events {{ {EVENT_FIELDS} }} }} }}"
EXPLANATIONS = "query($id: ID!) { node(id: $id) { explanations { text score dataset method } } }"


def _with_index(record: NeuronRecord, index: int) -> NeuronRecord:
    return dataclasses.replace(record, index=index)


def _upload(conn: str) -> None:
    client = BlobServiceClient.from_connection_string(conn).get_container_client(CONTAINER)
    client.create_container()
    blobs = {
        INDEX_BLOB: encode_index([MLP, HEADS]),
        f"{MLP.records_path}/0/1.json": encode_neuron_record(NEURON_RECORD),
        f"{MLP.records_path}/0/2.json": encode_neuron_record(silent_record()),
        f"{MLP.records_path}/0/3.json": encode_neuron_record(_with_index(neuron_record(seed=3), 3)),
        f"{HEADS.records_path}/0/1.json": encode_neuron_record(head_record()),
    }
    for name, data in blobs.items():
        client.upload_blob(name, data, overwrite=True)


def _blob(conn: str, path: str) -> bytes | None:
    client = BlobServiceClient.from_connection_string(conn).get_blob_client(CONTAINER, path)
    return client.download_blob().readall() if client.exists() else None


pytestmark = pytest.mark.usefixtures("calm_fake")


@pytest.fixture(scope="module")
def servers(azurite: str, fake: tuple[FakeOpenAI, str]) -> Iterator[dict[str, ServerProcess]]:
    _upload(azurite)
    port = next(p.split(":")[-1].split("/")[0] for p in azurite.split(";") if p.startswith("BlobEndpoint="))
    common = ["--run_model", "False", "--data_root", f"http://127.0.0.1:{port}/devstoreaccount1/{CONTAINER}/"]
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite, "OPENAI_API_KEY": "", "TEST_LLM_KEY": "sk-test"}
    keyed = ["--llm_api_key_env", "TEST_LLM_KEY", *LLM_FLAGS, "--max_concurrent_jobs", "20"]
    procs = {
        "llm": ServerProcess([*common, *keyed, "--llm_base_url", fake[1]], env=env),
        "nokey": ServerProcess([*common, "--neuron_method", "top-tokens"], env=env),
        "down": ServerProcess([*common, *keyed, "--llm_base_url", f"http://127.0.0.1:{free_port()}/v1"], env=env),
    }
    with ThreadPoolExecutor(len(procs)) as pool:
        list(pool.map(lambda p: p.start(), procs.values()))
    try:
        yield procs
    finally:
        for p in procs.values():
            p.stop()


def _start(server: ServerProcess, mutation: str, **fields: Any) -> dict[str, Any]:
    body = server.query(mutation, {"input": fields})
    assert "errors" not in body, body
    job: dict[str, Any] = next(iter(body["data"].values()))
    return job


async def _events(server: ServerProcess, job_id: str, after: int | None = None) -> AsyncIterator[dict[str, Any]]:
    transport = WebsocketsTransport(url=server.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"id": job_id, "after": after})
        async for result in session.subscribe(request):
            yield result["jobEvents"]


async def _all_events(server: ServerProcess, job_id: str, after: int | None = None) -> list[dict[str, Any]]:
    return await asyncio.wait_for(_collect(_events(server, job_id, after)), 60)


async def _collect(events: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e async for e in events]


def _stored(conn: str, dataset: DatasetSpec, method: str, layer: int, index: int) -> tuple[bytes | None, Any]:
    raw = _blob(conn, f"{dataset.explanations_path}/by-method/{method}/{layer}/{index}.jsonl")
    return raw, None if raw is None else decode_explanations(raw, "test")


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


def _check_strict_format(raw: bytes) -> None:
    """One line + newline, and no key TDB's dataclasses lack (our ``method`` extension must not be there)."""
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    keys = _keys(json.loads(raw))
    assert "method" not in keys, keys


async def test_score_streams_every_sequence_and_the_score_is_their_correlation(
    servers: dict[str, ServerProcess], azurite: str
) -> None:
    server = servers["llm"]
    job = _start(server, SCORE, nodeId=NEURON, explanation="cat and dog", method="BASELINE")
    assert job["status"] in ("QUEUED", "RUNNING", "COMPLETED") and job["kind"] == "SCORE"
    assert job["node"] == {"id": NEURON} and job["method"] == "baseline"
    events = await _all_events(server, job["id"])

    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["__typename"] == "JobStarted" and events[-1]["__typename"] == "JobCompleted"
    sims = sorted((e for e in events if e["__typename"] == "SequenceSimulated"), key=lambda e: e["index"])
    total = events[1]["total"]
    # The valid split, chosen here by hand: top records 2, 6, 10, 14, 18 then random records 1, 4, 7, 10, 13.
    expected = NEURON_RECORD.most_positive_activation_records[2::4][:5] + NEURON_RECORD.random_sample[1::3][:5]
    assert total == len(expected) == len(sims) and [s["index"] for s in sims] == list(range(total))
    for sim, record in zip(sims, expected, strict=True):
        assert sim["tokens"] == record.tokens and sim["actual"] == pytest.approx(record.activations)
        assert len(sim["predicted"]) == len(record.tokens)
    actual = np.concatenate([s["actual"] for s in sims])
    predicted = np.concatenate([s["predicted"] for s in sims])
    score = float(np.corrcoef(actual, predicted)[0, 1])
    completed = events[-1]
    assert completed["explanation"] == "cat and dog"
    assert completed["score"] == pytest.approx(score, abs=1e-9) and score > 0.9
    assert [e["done"] for e in events if e["__typename"] == "JobProgress"] == list(range(total + 1))

    body = server.query(JOB, {"id": job["id"]})["data"]["job"]
    assert body["status"] == "COMPLETED" and body["error"] is None
    assert body["result"] == {"explanation": "cat and dog", "score": completed["score"], "method": "baseline"}
    assert body["events"] == events
    again = _start(server, SCORE, nodeId=NEURON, explanation="cat and dog", method="BASELINE")
    assert again["id"] == job["id"]  # same inputs, same job

    shown = server.query(EXPLANATIONS, {"id": NEURON})["data"]["node"]["explanations"]
    mine = [e for e in shown if e["text"] == "cat and dog"]
    assert mine == [
        {
            "text": "cat and dog",
            "score": completed["score"],
            "dataset": "tiny-mlp/by-method/baseline",
            "method": "baseline",
        }
    ]
    raw, results = _stored(azurite, MLP, "baseline", 0, 1)
    assert raw is not None and isinstance(results, NeuronSimulationResults)
    _check_strict_format(raw)
    row = next(r for r in results.scored_explanations if r.explanation == "cat and dog")
    assert row.scored_simulation is not None
    assert row.scored_simulation.ev_correlation_score == pytest.approx(score, abs=1e-9)
    assert len(row.scored_simulation.scored_sequence_simulations) == total


async def test_a_subscriber_that_reconnects_with_after_misses_nothing(
    servers: dict[str, ServerProcess], fake: tuple[FakeOpenAI, str]
) -> None:
    server = servers["llm"]
    fake[0].latency_s = 0.15  # 10 sequences, 4 calls at a time: the job runs for about half a second
    job = _start(server, SCORE, nodeId=NEURON, explanation="a cat, a dog", method="BASELINE")
    first: list[dict[str, Any]] = []
    async for event in _events(server, job["id"]):
        first.append(event)
        if event["__typename"] == "SequenceSimulated":
            break  # closes the WebSocket mid-job
    assert first[-1]["__typename"] == "SequenceSimulated"
    rest = await _all_events(server, job["id"], after=first[-1]["seq"])
    assert rest and rest[0]["seq"] == first[-1]["seq"] + 1 and rest[-1]["__typename"] == "JobCompleted"
    full = server.query(JOB, {"id": job["id"]})["data"]["job"]["events"]
    assert first + rest == full
    assert len([e for e in full if e["__typename"] == "SequenceSimulated"]) == 10
    assert await _all_events(server, job["id"]) == full  # a finished job replays whole
    assert await _all_events(server, job["id"], after=full[-1]["seq"]) == []


async def test_malformed_replies_fail_the_job_and_store_nothing(
    servers: dict[str, ServerProcess], fake: tuple[FakeOpenAI, str], azurite: str
) -> None:
    server = servers["llm"]
    fake[0].inject(CHAT, "malformed", "malformed", "malformed")  # the first ask and both re-asks
    job = _start(server, SCORE, nodeId=NEURON, explanation="never parses", method="BASELINE", maxSequences=1)
    events = await _all_events(server, job["id"])
    assert events[-1]["__typename"] == "JobFailed" and events[-1]["code"] == "LLM_BAD_REPLY"
    assert not [e for e in events if e["__typename"] == "SequenceSimulated"]  # never a zero-filled sequence
    body = server.query(JOB, {"id": job["id"]})["data"]["job"]
    assert body["status"] == "FAILED" and body["result"] is None and body["error"]["code"] == "LLM_BAD_REPLY"
    shown = server.query(EXPLANATIONS, {"id": NEURON})["data"]["node"]["explanations"]
    assert "never parses" not in [e["text"] for e in shown]
    raw, _ = _stored(azurite, MLP, "baseline", 0, 1)
    assert raw is None or b"never parses" not in raw


async def test_429_and_500_are_retried(servers: dict[str, ServerProcess], fake: tuple[FakeOpenAI, str]) -> None:
    server = servers["llm"]
    before = fake[0].count(CHAT)
    fake[0].inject(CHAT, "429", "500")
    job = _start(server, SCORE, nodeId=NEURON, explanation="retried cat", method="BASELINE", maxSequences=1)
    events = await _all_events(server, job["id"])
    assert events[-1]["__typename"] == "JobCompleted" and events[-1]["score"] is not None
    assert fake[0].count(CHAT) - before == 3  # 429, 500, then the answer


async def test_twenty_concurrent_score_jobs_on_one_node_are_all_stored(
    servers: dict[str, ServerProcess], azurite: str
) -> None:
    server = servers["llm"]
    texts = [f"cat number {i}" for i in range(20)]

    async def start(client: httpx.AsyncClient, text: str) -> str:
        variables = {"input": {"nodeId": CROWDED, "explanation": text, "method": "TOKEN_LOOKUP", "maxSequences": 2}}
        response = await client.post(f"{server.url}/graphql", json={"query": SCORE, "variables": variables})
        job_id: str = response.json()["data"]["scoreExplanation"]["id"]
        return job_id

    async with httpx.AsyncClient(timeout=60) as client:
        ids = await asyncio.gather(*(start(client, t) for t in texts))
    finals = await asyncio.gather(*(_all_events(server, i) for i in ids))
    assert all(events[-1]["__typename"] == "JobCompleted" for events in finals), [e[-1] for e in finals]

    raw, results = _stored(azurite, MLP, "token-lookup", 0, 3)
    assert raw is not None and isinstance(results, NeuronSimulationResults)
    _check_strict_format(raw)
    assert (results.layer, results.index) == (0, 3)
    assert sorted(r.explanation or "" for r in results.scored_explanations) == sorted(texts)
    shown = server.query(EXPLANATIONS, {"id": CROWDED})["data"]["node"]["explanations"]
    assert sorted(e["text"] for e in shown) == sorted(texts)
    assert {e["method"] for e in shown} == {"token-lookup"}


async def test_heads_are_scored_by_roc_auc_and_stored_as_attention_results(
    servers: dict[str, ServerProcess], azurite: str
) -> None:
    server = servers["llm"]
    job = _start(server, SCORE, nodeId=HEAD, explanation="attends to cat", method="BASELINE")
    events = await _all_events(server, job["id"])
    assert events[-1]["__typename"] == "JobCompleted" and events[-1]["score"] > 0.9
    raw, results = _stored(azurite, HEADS, "baseline", 0, 1)
    assert raw is not None and isinstance(results, AttentionSimulationResults)
    _check_strict_format(raw)
    assert [r.explanation for r in results.scored_explanations] == ["attends to cat"]


async def test_without_a_key_the_no_llm_methods_explain_and_score(servers: dict[str, ServerProcess]) -> None:
    server = servers["nokey"]  # --neuron_method top-tokens: explains with top-tokens, scores with token-lookup
    job = _start(server, EXPLAIN, nodeId=NEURON, scoreMethod="TOKEN_LOOKUP")
    assert job["method"] == "top-tokens"
    events = await _all_events(server, job["id"])
    kinds = [e["__typename"] for e in events]
    assert kinds[:2] == ["JobStarted", "ExplanationProduced"] and kinds[-1] == "JobCompleted"
    text = events[1]["text"]
    assert "cat" in text and "dog" in text and events[-1]["score"] > 0.5

    scored = _start(server, SCORE, nodeId=NEURON, explanation="cat")
    assert scored["method"] == "token-lookup"
    done = await _all_events(server, scored["id"])
    assert done[-1]["__typename"] == "JobCompleted" and done[-1]["score"] > 0.5
    body = server.query(JOB, {"id": scored["id"]})["data"]["job"]
    assert body["result"]["method"] == "token-lookup"

    body = server.query(EXPLAIN, {"input": {"nodeId": NEURON, "method": "BASELINE"}})
    assert error_codes(body) == ["LLM_NOT_CONFIGURED"]
    body = server.query(SCORE, {"input": {"nodeId": NEURON, "explanation": "cat", "method": "BASELINE"}})
    assert error_codes(body) == ["LLM_NOT_CONFIGURED"]


async def test_an_unreachable_llm_fails_the_job_with_upstream_unavailable(
    servers: dict[str, ServerProcess],
) -> None:
    server = servers["down"]
    job = _start(server, EXPLAIN, nodeId=NEURON, method="BASELINE")
    events = await _all_events(server, job["id"])
    assert events[-1]["__typename"] == "JobFailed" and events[-1]["code"] == "UPSTREAM_UNAVAILABLE"
    assert server.query(JOB, {"id": job["id"]})["data"]["job"]["error"]["code"] == "UPSTREAM_UNAVAILABLE"


@pytest.mark.parametrize(
    "mutation,fields,code",
    [
        (SCORE, {"nodeId": NEURON, "explanation": "  "}, "BAD_USER_INPUT"),
        (SCORE, {"nodeId": NEURON, "explanation": "cat", "method": "psychic"}, "BAD_USER_INPUT"),
        (EXPLAIN, {"nodeId": NEURON, "method": "psychic"}, "BAD_USER_INPUT"),
        (SCORE, {"nodeId": NEURON, "explanation": "cat", "maxSequences": 0}, "BAD_USER_INPUT"),
        (SCORE, {"nodeId": SILENT, "explanation": "cat"}, "BAD_USER_INPUT"),
        (EXPLAIN, {"nodeId": SILENT}, "BAD_USER_INPUT"),
        (SCORE, {"nodeId": "tiny-gpt2/mlp_neuron/9/1", "explanation": "cat"}, "BAD_USER_INPUT"),
        (SCORE, {"nodeId": "tiny-gpt2/mlp_neuron/1/7", "explanation": "cat"}, "NOT_FOUND"),
    ],
    ids=[
        "empty",
        "unknown-scorer",
        "unknown-explainer",
        "max-sequences-0",
        "never-active",
        "explain-never-active",
        "out-of-range",
        "no-records",
    ],
)
def test_bad_inputs_are_typed_errors(
    servers: dict[str, ServerProcess], mutation: str, fields: dict[str, Any], code: str
) -> None:
    body = servers["llm"].query(mutation, {"input": fields})
    assert error_codes(body) == [code], body
    assert body["data"] is None


async def test_unknown_jobs_are_not_found(servers: dict[str, ServerProcess]) -> None:
    server = servers["llm"]
    body = server.query(JOB, {"id": "nope"})
    assert error_codes(body) == ["NOT_FOUND"] and body["data"] == {"job": None}
    with pytest.raises(TransportQueryError) as caught:
        await _all_events(server, "nope")
    assert (
        caught.value.errors is not None and caught.value.errors[0].get("extensions", {}).get("code") == "NOT_FOUND"
    ), caught.value.errors
