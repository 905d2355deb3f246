"""What a new user meets in the first hour, against the server ``bash scripts/dev.sh serve`` starts (the
embedded default, here on a fresh store and with JSON logs): every GraphQL example of the README runs
without an error, ``/metrics`` parses as Prometheus text, the logs parse as JSON with the request id on
every line of a request, and the schema's conventions (Relay connections, enum kinds, camelCase
extension keys) hold."""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import OperationDefinitionNode, OperationType, parse
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.server import EMBEDDED_DEFAULT, FAULTY_NODE, ROOT, ServerProcess, error_codes

README = ROOT / "README.md"


@pytest.fixture(scope="module")
def server(embedded_default: ServerProcess) -> ServerProcess:
    return embedded_default


# ---- the README ---------------------------------------------------------------------------------


def readme_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(block:operation label, operation source, variables) for every operation of every ```graphql
    block; a ``# variables: {...}`` comment just before an operation gives its variables."""
    text = README.read_text(encoding="utf-8")
    found = []
    for b, block in enumerate(re.findall(r"```graphql\n(.*?)```", text, flags=re.S)):
        document = parse(block)
        for o, definition in enumerate(document.definitions):
            assert isinstance(definition, OperationDefinitionNode) and definition.loc is not None
            source = block[definition.loc.start : definition.loc.end]
            before = block[: definition.loc.start].rstrip().splitlines()
            comment = before[-1] if before else ""
            variables = json.loads(comment.split(":", 1)[1]) if comment.startswith("# variables:") else {}
            found.append((f"block {b} operation {o}", source, variables))
    return found


def test_readme_examples_are_found() -> None:
    labels = [label for label, _, _ in readme_operations()]
    assert len(labels) >= 6, labels


def _subscribe(server: ServerProcess, query: str, variables: dict[str, Any]) -> list[dict[str, Any]]:
    payloads: list[dict[str, Any]] = []
    with connect(server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "complete":
                return payloads
            assert message["type"] in ("next", "error"), message
            payloads.append(message["payload"] if message["type"] == "next" else {"errors": message["payload"]})


def test_every_readme_graphql_example_runs_on_the_embedded_default(server: ServerProcess) -> None:
    """Run as written, in order (a subscription follows the job the mutation before it started)."""
    last_job: str | None = None
    for label, source, variables in readme_operations():
        values = {k: (last_job if isinstance(v, str) and v.startswith("<") else v) for k, v in variables.items()}
        operation = parse(source).definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        if operation.operation is OperationType.SUBSCRIPTION:
            payloads = _subscribe(server, source, values)
            assert payloads, label
            for payload in payloads:
                assert not payload.get("errors"), (label, payload)
            assert payloads[-1]["data"]["jobEvents"]["__typename"] == "JobCompleted", (label, payloads[-1])
            continue
        body = server.query(source, values)
        assert not body.get("errors"), (label, source, body.get("errors"))
        assert body["data"], label
        if operation.operation is OperationType.MUTATION:
            last_job = next(iter(body["data"].values()))["id"]


def test_readme_first_commands_and_the_embedded_default_agree() -> None:
    text = README.read_text(encoding="utf-8")
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S)
    assert first is not None
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines()]
    assert commands == ["bash scripts/dev.sh serve", "bash scripts/dev.sh test"]
    script = (ROOT / "scripts" / "dev.sh").read_text()
    serve = re.search(
        r"exec \.venv/bin/python neuron_explainer/activation_server/main\.py \\\n(.*?)\"\$@\"", script, re.S
    )
    assert serve is not None
    flags = shlex.split(serve.group(1).replace("\\\n", " "))
    given = dict(zip(flags[::2], flags[1::2], strict=True))
    expected = dict(zip(EMBEDDED_DEFAULT[::2], EMBEDDED_DEFAULT[1::2], strict=True))
    assert {k: v for k, v in given.items() if k in expected} == expected
    assert given["--data_root"] == "$ROOT/var/store" and given["--port"] == "8000"


# ---- operations: metrics and logs ---------------------------------------------------------------


def _metrics(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def test_metrics_scraped_and_parsed_with_prometheus_client(server: ServerProcess) -> None:
    before = _metrics(server)
    stored = "query StoredProbe($id: ID!) { node(id: $id) { topActivations(first: 2) { tokens } } }"
    for _ in range(4):  # the cache analyses a query seen twice: the third and fourth are hits
        assert not server.query(stored, {"id": "tiny-gpt2/mlp_neuron/1/3"}).get("errors")
    bad = server.query('query BadProbe { node(id: "tiny-gpt2/mlp_neuron/9/0") { id } }')
    assert error_codes(bad) == ["BAD_USER_INPUT"]
    live = 'query LiveProbe($p: String!) { node(id: "tiny-gpt2/mlp_neuron/0/1") { activations(prompt: $p) { activations } } }'
    assert not server.query(live, {"p": "metrics are numbers"}).get("errors")
    job = server.query('mutation JobProbe { explainNode(input: {nodeId: "tiny-gpt2/mlp_neuron/1/4"}) { id } }')
    assert not job.get("errors"), job
    after = _metrics(server)

    def grew(name: str, by: float = 1, **labels: str) -> None:
        delta = _value(after, name, **labels) - _value(before, name, **labels)
        assert delta >= by, (name, labels, delta)

    grew("neuron_explainer_graphql_operations_total", 3, operation="StoredProbe", type="query", outcome="ok")
    grew("neuron_explainer_graphql_operations_total", operation="BadProbe", outcome="BAD_USER_INPUT")
    grew("neuron_explainer_graphql_operations_total", operation="JobProbe", type="mutation", outcome="ok")
    grew("neuron_explainer_graphql_operation_duration_seconds_count", operation="LiveProbe", outcome="ok")
    assert (
        _value(after, "neuron_explainer_graphql_operation_duration_seconds_bucket", operation="LiveProbe", le="+Inf")
        >= 1
    )
    grew("neuron_explainer_http_requests_total", 6, route="/graphql", method="POST", status="200")
    grew("neuron_explainer_engine_forwards_total")
    grew("neuron_explainer_engine_batch_size_count")
    grew("neuron_explainer_cache_hits_total", 2, cache="responses")
    assert ("neuron_explainer_engine_queue_depth", ()) in after
    assert ("neuron_explainer_live_queue", ()) in after and ("neuron_explainer_live_refused_total", ()) in after
    assert _value(after, "neuron_explainer_ready") == 1
    statuses = {dict(ls)["status"] for (n, ls) in after if n == "neuron_explainer_jobs"}
    assert statuses == {"queued", "running", "completed", "failed", "interrupted"}
    assert sum(_value(after, "neuron_explainer_jobs", status=s) for s in statuses) >= 1


def _log_lines(server: ServerProcess, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
    """Every line of the server's log, parsed (each must be JSON), once ``until`` holds for them: the
    access line is written just after the answer has gone."""
    deadline = time.monotonic() + 10
    while True:
        lines = server.log_path.read_text(errors="replace").splitlines()
        entries = [json.loads(line) for line in lines if line.strip()]
        if until(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def test_json_logs_carry_the_request_id_on_every_line_of_a_request(server: ServerProcess) -> None:
    rid = "first-hour-test-1"
    response = server.post(
        'mutation($n: ID!) { scoreExplanation(input: {nodeId: $n, explanation: "x"}) { id } }',
        {"n": FAULTY_NODE},
        headers={"X-Request-Id": rid},
    )
    assert response.headers["x-request-id"] == rid
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "INTERNAL_SERVER_ERROR", "requestId": rid}
    entries = _log_lines(
        server, lambda es: any(e["logger"] == "neuron_explainer.access" and e.get("requestId") == rid for e in es)
    )
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    mine = [e for e in entries if e.get("requestId") == rid]
    loggers = {e["logger"] for e in mine}
    assert {"neuron_explainer.errors", "neuron_explainer.access"} <= loggers, mine
    internal = next(e for e in mine if e["logger"] == "neuron_explainer.errors")
    assert internal["level"] == "error" and "InjectedFault" in internal["exception"]
    access = next(e for e in mine if e["logger"] == "neuron_explainer.access")
    assert access["http"]["path"] == "/graphql" and access["http"]["status"] == 200
    # a client's id that is not a short token is replaced, never echoed into the logs
    odd = server.post("{ modelInfo { modelName } }", headers={"X-Request-Id": "a b;" * 30})
    assert re.fullmatch(r"[0-9a-f]{12}", odd.headers["x-request-id"])
    started = [e for e in entries if e["message"].startswith("ready in")]
    assert len(started) == 1 and started[0]["requestId"] is None


# ---- schema conventions -------------------------------------------------------------------------

PAGE = """query($kind: NodeKind!, $layer: Int!, $first: Int, $after: String, $last: Int, $before: String,
  $autoencoder: String) {
  nodes(model: "tiny-gpt2", kind: $kind, layer: $layer, first: $first, after: $after, last: $last,
    before: $before, autoencoder: $autoencoder) {
    totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  }
}"""


def _page(server: ServerProcess, **variables: Any) -> dict[str, Any]:
    body = server.query(PAGE, {"kind": "MLP_NEURON", "layer": 0, **variables})
    assert not body.get("errors"), body
    page: dict[str, Any] = body["data"]["nodes"]
    return page


def _indices(page: dict[str, Any]) -> list[int]:
    return [int(e["node"]["id"].rsplit("/", 1)[1]) for e in page["edges"]]


def test_nodes_is_a_complete_relay_connection(server: ServerProcess) -> None:
    first = _page(server, first=3)
    assert _indices(first) == [0, 1, 2] and first["totalCount"] == 256
    info = first["pageInfo"]
    assert info == {
        "hasNextPage": True,
        "hasPreviousPage": False,
        "startCursor": first["edges"][0]["cursor"],
        "endCursor": first["edges"][-1]["cursor"],
    }
    assert not any(e["cursor"].isdigit() for e in first["edges"])  # opaque, not raw indices
    second = _page(server, first=3, after=info["endCursor"])
    assert _indices(second) == [3, 4, 5] and second["pageInfo"]["hasPreviousPage"] is True
    back = _page(server, last=2, before=second["pageInfo"]["startCursor"])
    assert _indices(back) == [1, 2] and back["pageInfo"]["hasPreviousPage"] and back["pageInfo"]["hasNextPage"]
    tail = _page(server, last=2)
    assert _indices(tail) == [254, 255] and tail["pageInfo"]["hasNextPage"] is False
    assert _indices(_page(server)) == list(range(50))  # neither first nor last: the first 50
    window = _page(server, after=first["edges"][0]["cursor"], before=second["edges"][-1]["cursor"])
    assert _indices(window) == [1, 2, 3, 4]
    empty = _page(server, first=0)
    assert empty["edges"] == [] and empty["pageInfo"]["startCursor"] is None
    heads = _page(server, kind="ATTENTION_HEAD", layer=1, last=1)
    assert [e["node"]["id"] for e in heads["edges"]] == ["tiny-gpt2/attention_head/1/3"]
    latents = _page(server, kind="MLP_AUTOENCODER_LATENT", first=1)
    assert latents["edges"][0]["node"]["id"] == "tiny-gpt2/ae-tiny-mlp/0/0"
    named = _page(server, kind="ATTENTION_AUTOENCODER_LATENT", autoencoder="ae-tiny-attn", first=1)
    assert named["totalCount"] == 256


def test_connection_and_kind_arguments_fail_clearly(server: ServerProcess) -> None:
    cases = [
        ({"after": "5"}, "is not one this server issued"),
        ({"first": 1001}, "first must be within 0..1000"),
        ({"last": -1}, "last must be within 0..1000"),
        ({"autoencoder": "ae-tiny-mlp"}, "autoencoder is only for latent kinds"),
        ({"kind": "MLP_AUTOENCODER_LATENT", "autoencoder": "ae-tiny-attn"}, "is not a known MLP_AUTOENCODER_LATENT"),
    ]
    for variables, message in cases:
        body = server.query(PAGE, {"kind": "MLP_NEURON", "layer": 0, **variables})
        assert error_codes(body) == ["BAD_USER_INPUT"] and message in body["errors"][0]["message"], body
    literal = server.query('{ nodes(model: "tiny-gpt2", kind: mlp_neuron, layer: 0) { totalCount } }')
    assert error_codes(literal) == ["GRAPHQL_VALIDATION_FAILED"]
    assert "Did you mean the enum value 'MLP_NEURON'?" in literal["errors"][0]["message"], literal


def test_extension_keys_are_camel_case(server: ServerProcess) -> None:
    body = server.query('{ job(id: "no-such-job") { id } }')
    assert error_codes(body) == ["NOT_FOUND"]
    assert body["errors"][0]["extensions"] == {"code": "NOT_FOUND", "jobId": "no-such-job"}
    other = server.query('{ node(id: "gpt2-small/mlp_neuron/5/131") { maxActivation } }')
    assert error_codes(other) == ["NOT_FOUND"], other  # another model's node: no live build on the wrong model
    assert "live records are computed only for the running model tiny-gpt2" in other["errors"][0]["message"]
    for error in body["errors"] + other["errors"]:
        for key in error["extensions"]:
            assert "_" not in key, error


def test_readme_mentions_what_a_user_needs(server: ServerProcess) -> None:
    text = README.read_text(encoding="utf-8")
    for needle in ("--allowed_origins", "~/.cache/neuron-explainer/", "~/.cache/huggingface/hub", "--port 9000",
                   "/health/live", "/metrics", "--log_format", "gpt2-small/mlp_neuron/5/131"):  # fmt: skip
        assert needle in text, needle
    assert Path(server.log_path).exists()
