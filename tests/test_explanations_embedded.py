"""Must-show of issue 13 on the embedded default (``scripts/dev.sh serve``: tiny-gpt2, its two autoencoders and
the demo dataset built on first start), with the fake OpenAI server as the LLM: one node explained, then
scored by simulation (baseline), detection, fuzzing and embedding in one job streamed over a real WebSocket
subscription; all four scores stored and shown by ``Node.explanations``; ``searchExplanations`` finds it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from tests.fake_openai import FakeOpenAI
from tests.server import EMBEDDED_DEFAULT, InProcessServer, error_codes

FOUR = ["baseline", "detection", "fuzzing", "embedding"]
FOUR_MEMBERS = [m.upper() for m in FOUR]  # as the ScoreMethod enum names them in inputs
JOB = "id status methods result { explanation score scores { method score } } error { code message }"
EXPLAIN = f"mutation($id: ID!) {{ explainNode(input: {{nodeId: $id, method: BASELINE}}) {{ {JOB} }} }}"
SCORE = (
    "mutation($id: ID!, $text: String!, $methods: [ScoreMethod!]) { scoreExplanation(input: "
    f"{{nodeId: $id, explanation: $text, methods: $methods}}) {{ {JOB} }} }}"
)
EVENTS = """subscription($id: ID!) { jobEvents(jobId: $id) {
  __typename seq
  ... on SequenceSimulated { method index predicted actual runningScore }
  ... on JobProgress { done total }
  ... on JobCompleted { explanation score scores { method score } }
  ... on JobFailed { code message }
} }"""
EXPLANATIONS = "query($id: ID!) { node(id: $id) { explanations { text score method dataset } } }"
SEARCH = (
    "query($text: String!, $first: Int) { searchExplanations(text: $text, first: $first) "
    "{ node { id } text score method similarity scores { method score } } }"
)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory, fake: tuple[FakeOpenAI, str]) -> Iterator[InProcessServer]:
    data_root = tmp_path_factory.mktemp("embedded-store")
    home = tmp_path_factory.mktemp("embedded-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPENAI_API_KEY", "test")
        mp.setenv("NEURON_EXPLAINER_HOME", str(home))
        args = [*EMBEDDED_DEFAULT, "--data_root", str(data_root), "--llm_base_url", fake[1], "--llm_max_retries", "1"]
        with InProcessServer(args, startup_timeout=300) as server:
            yield server


def _data(server: InProcessServer, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    body = server.query(query, variables)
    assert not body.get("errors"), body
    return body["data"]


def _wait(server: InProcessServer, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _data(server, f"query($id: ID!) {{ job(id: $id) {{ {JOB} }} }}", {"id": job_id})["job"]
        if job["status"] in ("COMPLETED", "FAILED"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end")


async def _events(server: InProcessServer, job_id: str) -> list[dict[str, Any]]:
    transport = WebsocketsTransport(url=server.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=transport) as session:
        request = GraphQLRequest(EVENTS, variable_values={"id": job_id})
        return [r["jobEvents"] async for r in session.subscribe(request)]


async def _explained_node(server: InProcessServer) -> tuple[str, str, dict[str, Any]]:
    """The first attention-autoencoder latent of layer 1 the classifier scorers accept (the toy model's
    neurons are dense: their random windows all reach 10% of the top), its explanation and score job."""
    refused = 0
    for index in range(64):
        node = f"tiny-gpt2/ae-tiny-attn/1/{index}"
        explained = _wait(server, _data(server, EXPLAIN, {"id": node})["explainNode"]["id"])
        text = explained["result"]["explanation"]
        body = await asyncio.to_thread(server.query, SCORE, {"id": node, "text": text, "methods": FOUR_MEMBERS})
        if error_codes(body) == ["BAD_USER_INPUT"]:
            assert "non-activating records" in body["errors"][0]["message"], body
            refused += 1
            continue
        assert not body.get("errors"), body
        return node, text, body["data"]["scoreExplanation"]
    raise AssertionError(f"no latent of layer 1 has enough non-activating records ({refused} refused)")


async def test_four_methods_in_one_job_stored_shown_and_found(embedded: InProcessServer) -> None:
    node, text, job = await _explained_node(embedded)
    assert job["methods"] == FOUR
    events = await asyncio.wait_for(_events(embedded, job["id"]), 180)
    completed = events[-1]
    assert completed["__typename"] == "JobCompleted", events[-3:]
    assert [s["method"] for s in completed["scores"]] == FOUR and completed["explanation"] == text
    assert [e["__typename"] for e in events].count("JobCompleted") == 1
    sequences = [e for e in events if e["__typename"] == "SequenceSimulated"]
    assert {e["method"] for e in sequences} == set(FOUR)
    progress = [e for e in events if e["__typename"] == "JobProgress"]
    assert progress[-1]["done"] == progress[-1]["total"] == len(sequences)
    scores = {s["method"]: s["score"] for s in completed["scores"]}
    print(f"\nmust-show: {node} {text!r} scores {scores}")

    shown = _data(embedded, EXPLANATIONS, {"id": node})["node"]["explanations"]
    assert {e["method"]: e["score"] for e in shown if e["text"] == text} == scores
    assert all("/by-method/" in e["dataset"] for e in shown)

    (hit,) = _data(embedded, SEARCH, {"text": text, "first": 1})["searchExplanations"]
    assert hit["node"]["id"] == node and hit["text"] == text and hit["method"] == "baseline"
    assert hit["similarity"] == pytest.approx(1.0, abs=1e-4) and {s["method"] for s in hit["scores"]} == set(FOUR)
    agreement = _data(embedded, "{ scorerAgreement { methodA methodB explanations spearman } }", {})
    assert {(a["methodA"], a["methodB"]) for a in agreement["scorerAgreement"]} >= {("baseline", "detection")}


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        (SCORE, {"id": "tiny-gpt2/ae-tiny-attn/1/0", "text": "x", "methods": []}),
        (SCORE, {"id": "tiny-gpt2/ae-tiny-attn/1/0", "text": "x", "methods": ["BASELINE", "magic"]}),
        (SEARCH, {"text": " ", "first": 3}),
        (SEARCH, {"text": "French", "first": 0}),
        (SEARCH, {"text": "French", "first": 500}),
    ],
)
def test_bad_input_is_bad_user_input(embedded: InProcessServer, query: str, variables: dict[str, Any]) -> None:
    body = embedded.query(query, variables)
    assert error_codes(body) == ["BAD_USER_INPUT"], body
