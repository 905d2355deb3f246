"""Property-based fuzzing of a real server's inputs (hypothesis, derandomized so CI is repeatable).

Over real HTTP: node ids (any unicode, control characters, lone surrogates, out-of-range numbers),
numbers out of range (as variables and as literals), explanation texts (unicode, control characters,
up to a megabyte), prompts on a live tiny-gpt2 (the same, and longer than its context),
malformed JSON bodies and well-formed bodies of the wrong shape. Over a real
WebSocket (graphql-transport-ws): random frames, text and binary, before and after ``connection_init``.

The property: no HTTP 5xx, no ``INTERNAL_SERVER_ERROR`` (an unmasked bug), and the server process is
alive and healthy after each batch. ``TRIED`` counts the inputs sent; the last test prints the total.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from tests.hardening_data import data_root, neuron, upload
from tests.server import ServerProcess

CONTAINER = "fuzz"
TRIED: Counter[str] = Counter()
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
NODE = (
    "query($id: ID!, $first: Int) { node(id: $id) { id kind layer index "
    "topActivations(first: $first) { tokens activations } explanations { text } } }"
)
PAGE = (
    "query($model: String!, $kind: NodeKind!, $layer: Int!, $first: Int, $after: String, $before: String, "
    "$last: Int) { nodes(model: $model, kind: $kind, layer: $layer, first: $first, after: $after, "
    "before: $before, last: $last) "
    "{ totalCount edges { node { id } } } }"
)
SCORE = "mutation($input: ScoreExplanationInput!) { scoreExplanation(input: $input) { id status } }"
JOB = "query($id: ID!, $after: Int) { job(id: $id) { id events(after: $after) { seq } } }"

weird_text = st.text(st.characters(codec=None, categories=None), max_size=300)
big_ints = st.integers(min_value=-(2**70), max_value=2**70)
json_scalars = st.one_of(st.none(), st.booleans(), big_ints, st.floats(allow_nan=False), weird_text)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(weird_text, inner, max_size=4),
    max_leaves=12,
)
node_ids = st.one_of(
    weird_text,
    st.builds(
        lambda model, kind, layer, index: f"{model}/{kind}/{layer}/{index}",
        st.sampled_from(["tiny-gpt2", "gpt2-small", "", "../..", "tiny-gpt2/../x"]),
        st.sampled_from(["mlp_neuron", "attention_head", "ae-resid-delta-mlp-v4", "x"]),
        big_ints | weird_text,
        big_ints | weird_text,
    ),
)


@pytest.fixture(scope="module")
def server(azurite: str) -> Iterator[ServerProcess]:
    upload(azurite, CONTAINER)
    args = ["--run_model", "False", "--data_root", data_root(azurite, CONTAINER), "--neuron_method", "top-tokens"]
    with ServerProcess(args, env={"AZURE_STORAGE_CONNECTION_STRING": azurite, "OPENAI_API_KEY": ""}) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


def _check(response: httpx.Response, kind: str) -> None:
    TRIED[kind] += 1
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.headers.get("content-type", "").startswith("application/json"):
        text = response.text
        assert "INTERNAL_SERVER_ERROR" not in text, text[:1000]


def _healthy(server: ServerProcess) -> None:
    assert server.proc is not None and server.proc.poll() is None, server.log()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200


def _post(client: httpx.Client, query: str, variables: dict[str, Any], kind: str) -> None:
    # json.dumps escapes lone surrogates (\ud800): valid JSON that decodes to a str UTF-8 cannot encode.
    body = json.dumps({"query": query, "variables": variables})
    _check(client.post("/graphql", content=body, headers={"content-type": "application/json"}), kind)


def test_node_ids_and_numbers(server: ServerProcess, client: httpx.Client) -> None:
    @FUZZ
    @given(node_ids, st.one_of(st.none(), big_ints, st.floats(allow_nan=False), weird_text))
    def run(node_id: str, first: Any) -> None:
        _post(client, NODE, {"id": node_id, "first": first}, "node ids")

    run()
    _healthy(server)


def test_paging_arguments_and_literals(server: ServerProcess, client: httpx.Client) -> None:
    kinds = st.sampled_from(["MLP_NEURON", "ATTENTION_HEAD", "MLP_AUTOENCODER_LATENT"]) | st.text(max_size=20)
    models = st.sampled_from(["gpt2-small"]) | st.text(max_size=20)

    @FUZZ
    @given(models, kinds, big_ints, big_ints, st.none() | weird_text, big_ints, st.booleans())
    def run(model: str, kind: str, layer: int, first: int, after: str | None, literal: int, back: bool) -> None:
        variables: dict[str, Any] = {"model": model, "kind": kind, "layer": layer}
        # forwards (first/after) or backwards (last/before) through the connection
        variables |= {"last": first, "before": after} if back else {"first": first, "after": after}
        _post(client, PAGE, variables, "paging")
        inline = f'{{ node(id: "{neuron(0)}") {{ topActivations(first: {literal}) {{ tokens }} }} }}'
        _post(client, inline, {}, "paging")
        _post(client, JOB, {"id": str(literal), "after": literal}, "paging")

    run()
    _healthy(server)


def test_explanation_texts(server: ServerProcess, client: httpx.Client) -> None:
    texts = st.one_of(weird_text, st.sampled_from(["\x00" * 1000, "é" * 200_000, "a " * 500_000, "\u202e" * 99]))

    @FUZZ
    @given(texts, st.sampled_from([neuron(1), neuron(2), "tiny-gpt2/attention_head/0/1"]), big_ints | st.none())
    def run(text: str, node: str, max_sequences: int | None) -> None:
        fields = {"nodeId": node, "explanation": text, "method": "TOKEN_LOOKUP", "maxSequences": max_sequences}
        _post(client, SCORE, {"input": fields}, "explanations")

    run()
    _healthy(server)


def test_malformed_bodies(server: ServerProcess, client: httpx.Client) -> None:
    @FUZZ
    @given(
        st.one_of(
            st.binary(max_size=2000),
            weird_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
            json_values.map(lambda v: json.dumps(v).encode()),
            st.fixed_dictionaries({"query": json_values, "variables": json_values, "operationName": json_values}).map(
                lambda v: json.dumps(v).encode()
            ),
        ),
        st.sampled_from(["application/json", "application/graphql", "text/plain", "multipart/form-data", ""]),
        st.sampled_from(["POST", "GET"]),
    )
    def run(body: bytes, content_type: str, method: str) -> None:
        if method == "GET":
            params = {"query": body.decode("utf-8", "replace"), "variables": body[:50].decode("latin-1")}
            response = client.get("/graphql", params=params, headers={"accept": "application/json"})
        else:
            response = client.post("/graphql", content=body, headers={"content-type": content_type})
        _check(response, "bodies")

    run()
    _healthy(server)


def test_malformed_websocket_frames(server: ServerProcess) -> None:
    messages = st.one_of(
        json_values.map(json.dumps),
        st.fixed_dictionaries({"type": st.sampled_from(["subscribe", "connection_init", "ping", "complete", "next"])})
        .flatmap(
            lambda m: st.fixed_dictionaries({"type": st.just(m["type"]), "id": json_values, "payload": json_values})
        )
        .map(json.dumps),
        st.builds(
            lambda q, v: json.dumps({"type": "subscribe", "id": "1", "payload": {"query": q, "variables": v}}),
            st.sampled_from([JOB, NODE, "subscription { jobEvents(jobId: 1) { seq } }", "{", ""]) | weird_text,
            json_values,
        ),
        st.binary(max_size=300),
    )

    @FUZZ
    @given(st.booleans(), st.lists(messages, min_size=1, max_size=4))
    def run(init_first: bool, frames: list[str | bytes]) -> None:
        TRIED["websocket frames"] += len(frames)
        try:
            with connect(server.ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:  # type: ignore[list-item]
                if init_first:
                    ws.send(json.dumps({"type": "connection_init", "payload": {}}))
                    ws.recv(timeout=10)
                for frame in frames:
                    ws.send(frame)
                try:
                    while True:
                        ws.recv(timeout=0.05)  # whatever comes back, until the server is quiet or closes
                except TimeoutError:
                    pass
        except WebSocketException:
            pass  # the server closing a socket it got garbage on is the right answer

    run()
    _healthy(server)


LIVE = (
    "query($id: ID!, $p: String!) { node(id: $id) { activations(prompt: $p) { tokens activations } } "
    "prompt(text: $p) { tokens loss topLogits(k: 3) { token } topNodes(kind: MLP_NEURON, k: 3) { value } } }"
)


def test_prompts_on_a_live_model(azurite: str) -> None:
    args = ["--model_name", "tiny-gpt2", "--run_model", "True", "--data_root", data_root(azurite, CONTAINER)]
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite, "OPENAI_API_KEY": ""}
    prompts = st.one_of(
        weird_text,
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
        st.sampled_from(["", " ", "\x00", "\ud800", "a" * 500, "é" * 129, "x " * 200_000, "\u202e\u0000\t\r"]),
    )
    with (
        ServerProcess([*args, "--neuron_method", "top-tokens"], env=env) as live,
        httpx.Client(base_url=live.url, timeout=60) as client,
    ):
        assert live.query("{ modelInfo { running } }")["data"]["modelInfo"]["running"]

        @settings(FUZZ, max_examples=100)
        @given(prompts, st.sampled_from([neuron(1), "tiny-gpt2/attention_head/1/3", "tiny-gpt2/mlp_neuron/1/255"]))
        def run(prompt: str, node: str) -> None:
            _post(client, LIVE, {"id": node, "p": prompt}, "prompts")

        run()
        _healthy(live)


def test_inputs_tried(server: ServerProcess) -> None:
    total = sum(TRIED.values())
    print(f"\nfuzz inputs tried: {total} ({dict(TRIED)}); HTTP 5xx: 0; internal errors: 0; server healthy")
    assert total >= 600, TRIED
    assert " 500 Internal Server Error" not in server.log_path.read_text(), server.log()
