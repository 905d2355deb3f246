"""Limits, cost budget, API keys and the LLM rate limit, over real HTTP and WebSocket.

Three real servers on one Azurite container: ``open`` (no key, tight limits: depth 5, 5 aliases, 400
tokens, budget 500, 2 LLM mutations a minute, LLM faked on loopback), ``keyed`` (``--api_key``:
mutations and subscriptions need it) and ``locked`` (key from ``NEURON_EXPLAINER_API_KEY``,
``--require_auth_for_all True``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from neuron_explainer.schema.policy.rate_limit import RateLimiter
from tests.fake_openai import CHAT, FakeOpenAI, serve_in_thread
from tests.hardening_data import data_root, neuron, upload
from tests.server import ServerProcess, error_codes

CONTAINER = "guard"
KEY = "sekrit-key-1"
ENV_KEY = "env-key-2"
JOB_FIELDS = "id status"
EXPLAIN = f"mutation($input: ExplainNodeInput!) {{ explainNode(input: $input) {{ {JOB_FIELDS} }} }}"
SUBSCRIBE = "subscription($id: ID!) { jobEvents(jobId: $id) { __typename seq } }"
SMALL = "query($id: ID!) { node(id: $id) { id topActivations(first: 2) { tokens } } }"
WIDE = (
    '{ datasets { name } nodes(model: "tiny-gpt2", kind: MLP_NEURON, layer: 0, first: 40) '
    "{ edges { node { topActivations(first: 20) { tokens } } } } }"
)


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with serve_in_thread(fake) as url:
        yield fake, url


@pytest.fixture(scope="module")
def servers(azurite: str, fake: tuple[FakeOpenAI, str]) -> Iterator[dict[str, ServerProcess]]:
    upload(azurite, CONTAINER)
    common = ["--run_model", "False", "--data_root", data_root(azurite, CONTAINER), "--neuron_method", "top-tokens"]
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite, "OPENAI_API_KEY": "", "NEURON_EXPLAINER_API_KEY": ""}
    tight = ["--max_query_depth", "5", "--max_aliases", "5", "--max_query_tokens", "400"]
    tight += ["--max_request_cost", "500", "--llm_rate_limit_per_minute", "2"]
    llm = ["--llm_api_key_env", "TEST_LLM_KEY", "--llm_base_url", fake[1], "--llm_max_retries", "0"]
    procs = {
        "open": ServerProcess([*common, *tight, *llm], env={**env, "TEST_LLM_KEY": "sk-test"}),
        "keyed": ServerProcess([*common, "--api_key", KEY], env=env),
        "locked": ServerProcess(
            [*common, "--require_auth_for_all", "True"], env={**env, "NEURON_EXPLAINER_API_KEY": ENV_KEY}
        ),
    }
    with ThreadPoolExecutor(len(procs)) as pool:
        list(pool.map(lambda p: p.start(), procs.values()))
    try:
        yield procs
    finally:
        for p in procs.values():
            p.stop()


def _ext(body: dict[str, Any]) -> dict[str, Any]:
    errors = body.get("errors") or [{}]
    extensions: dict[str, Any] = errors[0].get("extensions", {})
    return extensions


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _ws(server: ServerProcess, key: str | None = None) -> Client:
    transport = WebsocketsTransport(
        url=server.ws_url,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        init_payload=_bearer(key) if key else {},
    )
    return Client(transport=transport)


async def _ws_codes(
    server: ServerProcess, document: str, variables: dict[str, Any], key: str | None = None
) -> list[str]:
    """Run one operation over a WebSocket (subscriptions to their end); the error codes it got."""
    async with _ws(server, key) as session:
        request = GraphQLRequest(document, variable_values=variables)
        try:
            if document.lstrip().startswith("subscription"):
                async for _ in session.subscribe(request):
                    pass
            else:
                await session.execute(request)
        except TransportQueryError as caught:
            return [e.get("extensions", {}).get("code") for e in caught.errors or []]
    return []


# ---- shape limits and cost ------------------------------------------------------------------


def test_depth_aliases_and_tokens_are_limit_exceeded(servers: dict[str, ServerProcess]) -> None:
    server = servers["open"]
    assert "errors" not in server.query(SMALL, {"id": neuron(1)})  # depth 4, no aliases: fine
    deep = (
        '{ nodes(model: "tiny-gpt2", kind: MLP_NEURON, layer: 0, first: 1) '
        "{ edges { node { quantileSamples(first: 1) { records { provenance { source } } } } } } }"
    )
    body = server.query(deep)
    assert error_codes(body) == ["LIMIT_EXCEEDED"] and _ext(body)["limit"] == "max_query_depth", body
    aliases = "{ " + " ".join(f"a{i}: datasets {{ name }}" for i in range(6)) + " }"
    body = server.query(aliases)
    assert error_codes(body) == ["LIMIT_EXCEEDED"] and _ext(body)["limit"] == "max_aliases", body
    assert _ext(body)["allowed"] == 5 and body.get("data") is None
    many_tokens = "{ datasets { " + " ".join(["name"] * 500) + " } }"
    body = server.query(many_tokens)
    assert error_codes(body) == ["LIMIT_EXCEEDED"] and _ext(body)["limit"] == "max_query_tokens", body


def test_over_budget_is_refused_before_anything_runs(
    servers: dict[str, ServerProcess], fake: tuple[FakeOpenAI, str]
) -> None:
    server = servers["open"]
    body = server.query(WIDE)
    assert error_codes(body) == ["LIMIT_EXCEEDED"], body
    ext = _ext(body)
    # 40 nodes x 20 records + the 40 nodes + the connection + datasets: priced from the document alone.
    assert ext["limit"] == "request_cost" and ext["budget"] == 500 and ext["estimate"] == 842
    assert ext["fields"]["Node.topActivations"] == 800
    assert body.get("data") is None  # not even the cheap `datasets` ran
    # Variables are priced too: first: 20 of 40 nodes x 20 records is still over; 10 x 20 fits.
    paged = (
        'query($n: Int!) { nodes(model: "tiny-gpt2", kind: MLP_NEURON, layer: 0, first: $n) '
        "{ edges { node { topActivations(first: 20) { tokens } } } } }"
    )
    assert error_codes(server.query(paged, {"n": 30})) == ["LIMIT_EXCEEDED"]
    fits = server.query(paged, {"n": 10})
    assert "errors" not in fits and len(fits["data"]["nodes"]["edges"]) == 10
    # A job costs 10, and an LLM mutation its calls on top: explain (1) + 10 scored sequences = 1,110 units.
    calls = fake[0].count(CHAT)
    expensive = {"nodeId": neuron(2), "method": "BASELINE", "scoreMethod": "BASELINE", "maxSequences": 10}
    body = server.query(EXPLAIN, {"input": expensive})
    assert error_codes(body) == ["LIMIT_EXCEEDED"] and _ext(body)["estimate"] == 1110, body
    assert fake[0].count(CHAT) == calls


async def test_limits_cover_websocket_operations_and_subscriptions(servers: dict[str, ServerProcess]) -> None:
    server = servers["open"]
    assert await _ws_codes(server, WIDE, {}) == ["LIMIT_EXCEEDED"]
    aliased = "subscription($id: ID!) { jobEvents(jobId: $id) { a: seq b: seq c: seq d: seq e: seq f: seq } }"
    assert await _ws_codes(server, aliased, {"id": "whatever"}) == ["LIMIT_EXCEEDED"]


# ---- LLM rate limit ---------------------------------------------------------------------------


def test_llm_mutations_are_rate_limited_per_caller(servers: dict[str, ServerProcess]) -> None:
    server = servers["open"]
    # No-LLM methods are not counted.
    for i in range(3):
        body = server.query(EXPLAIN, {"input": {"nodeId": neuron(10 + i), "method": "TOP_TOKENS"}})
        assert "errors" not in body, body
    for i in range(2):
        body = server.query(EXPLAIN, {"input": {"nodeId": neuron(20 + i), "method": "BASELINE"}})
        assert "errors" not in body, body
    body = server.query(EXPLAIN, {"input": {"nodeId": neuron(22), "method": "BASELINE"}})
    assert error_codes(body) == ["LIMIT_EXCEEDED"] and _ext(body)["limit"] == "llm_rate", body
    assert 1 <= _ext(body)["retryAfter"] <= 30 and body.get("data") is None
    # Another caller (another loopback address) has its own bucket.
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=30) as other:
        response = other.post(
            f"{server.url}/graphql",
            json={"query": EXPLAIN, "variables": {"input": {"nodeId": neuron(22), "method": "BASELINE"}}},
        )
    assert response.status_code == 200 and "errors" not in response.json(), response.text


def test_token_bucket_refills_at_the_configured_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(6, clock=lambda: now[0])  # 6 a minute: one every 10 s, bursts of 6
    assert [limiter.take("a") for _ in range(6)] == [0.0] * 6
    assert limiter.take("a") == pytest.approx(10.0)
    assert limiter.take("b", 3) == 0.0  # another caller
    now[0] = 25.0
    assert limiter.take("a", 2) == 0.0 and limiter.take("a") == pytest.approx(5.0)
    assert limiter.take("a", 7) == float("inf")  # more than a bucket holds: never


# ---- authentication ---------------------------------------------------------------------------


def test_mutations_need_the_key_over_http(servers: dict[str, ServerProcess]) -> None:
    server = servers["keyed"]
    assert "errors" not in server.query(SMALL, {"id": neuron(1)})  # queries stay open
    fields = {"input": {"nodeId": neuron(3)}}
    for headers, reason in (({}, "missing"), (_bearer("wrong"), "invalid"), ({"Authorization": KEY}, "invalid")):
        body = server.query(EXPLAIN, fields, headers=headers)
        assert error_codes(body) == ["UNAUTHENTICATED"] and _ext(body)["reason"] == reason, body
        assert body.get("data") is None
    body = server.query(EXPLAIN, fields, headers=_bearer(KEY))
    assert "errors" not in body and body["data"]["explainNode"]["id"], body
    # A bad document from an unauthenticated caller learns only that it is unauthenticated.
    body = server.query("mutation { explainNode(input: {nodeId: 3}) { nope } }")
    assert error_codes(body) == ["UNAUTHENTICATED"]


async def test_subscriptions_need_the_key_in_connection_init(servers: dict[str, ServerProcess]) -> None:
    server = servers["keyed"]
    job = server.query(EXPLAIN, {"input": {"nodeId": neuron(4)}}, headers=_bearer(KEY))["data"]["explainNode"]
    assert await _ws_codes(server, SUBSCRIBE, {"id": job["id"]}) == ["UNAUTHENTICATED"]
    assert await _ws_codes(server, SUBSCRIBE, {"id": job["id"]}, key="wrong") == ["UNAUTHENTICATED"]
    assert await _ws_codes(server, EXPLAIN, {"input": {"nodeId": neuron(5)}}) == ["UNAUTHENTICATED"]
    assert await _ws_codes(server, SMALL, {"id": neuron(1)}) == []  # queries over the socket stay open
    async with _ws(server, KEY) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"id": job["id"]})
        events = await asyncio.wait_for(_collect(session, request), 30)
    assert events[0] == "JobStarted" and events[-1] == "JobCompleted"


async def _collect(session: Any, request: GraphQLRequest) -> list[str]:
    return [r["jobEvents"]["__typename"] async for r in session.subscribe(request)]


async def test_require_auth_for_all_covers_queries(servers: dict[str, ServerProcess]) -> None:
    server = servers["locked"]
    body = server.query(SMALL, {"id": neuron(1)})
    assert error_codes(body) == ["UNAUTHENTICATED"] and body.get("data") is None
    assert error_codes(server.query("{ __schema { queryType { name } } }")) == ["UNAUTHENTICATED"]
    assert "errors" not in server.query(SMALL, {"id": neuron(1)}, headers=_bearer(ENV_KEY))
    assert httpx.get(f"{server.url}/health").status_code == 200  # the health check stays open
    assert await _ws_codes(server, SMALL, {"id": neuron(1)}) == ["UNAUTHENTICATED"]
    assert await _ws_codes(server, SMALL, {"id": neuron(1)}, key=ENV_KEY) == []
