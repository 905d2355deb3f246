"""GraphQL over HTTP as the specification says: the ``graphql-http`` audit suite (the reference
implementation's, pinned in package.json) against a real server, and the status codes we promise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
GRAPHQL_RESPONSE = "application/graphql-response+json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("http-spec")
    with ServerProcess(["--run_model", "False", "--data_root", str(data)], env={"OPENAI_API_KEY": ""}) as s:
        yield s


def test_the_graphql_http_audit_passes_every_must(server: ServerProcess) -> None:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules" / "graphql-http").is_dir():
        pytest.fail("node and node_modules/graphql-http are needed (the setup command installs both)")
    run = subprocess.run(
        [node, str(ROOT / "client" / "tests" / "http-audit.mjs")],
        env={**os.environ, "URL": f"{server.url}/graphql"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads(run.stdout.strip().splitlines()[-1])
    counts = Counter((r["name"].split()[0], r["status"]) for r in results)
    print(f"\ngraphql-http audit: {dict(sorted(counts.items()))}")
    failed = [r for r in results if r["status"] != "ok" and r["name"].startswith("MUST")]
    assert not failed, failed
    assert counts[("MUST", "ok")] >= 13
    warned = [r["name"] for r in results if r["status"] != "ok"]
    print("not ok:", warned or "none")


def _post(server: ServerProcess, body: object, accept: str, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/graphql", json=body, headers={"accept": accept}, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_status_codes_follow_the_accepted_media_type(server: ServerProcess) -> None:
    ok = _post(server, {"query": "{ __typename }"}, GRAPHQL_RESPONSE)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    for body in ({"query": "{ nope }"}, {"query": "{"}, {"query": "query A { __typename } query B { __typename }"}):
        strict = _post(server, body, GRAPHQL_RESPONSE)
        assert strict.status_code == 400 and "data" not in strict.json(), strict.text
        plain = _post(server, body, "application/json")
        assert plain.status_code == 200 and plain.json()["errors"], plain.text
        assert plain.headers["content-type"].startswith("application/json")
    # A field error leaves data, so the request itself was fine: 200 under both.
    field_error = _post(server, {"query": '{ node(id: "nonsense") { id } }'}, GRAPHQL_RESPONSE)
    assert field_error.status_code == 200 and field_error.json()["data"] == {"node": None}
    refused = httpx.post(f"{server.url}/graphql", json={"query": "{ __typename }"}, headers={"accept": "text/csv"})
    assert refused.status_code == 406


def test_get_serves_queries_only(server: ServerProcess) -> None:
    got = httpx.get(f"{server.url}/graphql", params={"query": "{ __typename }"}, timeout=30)
    assert got.status_code == 200 and got.json() == {"data": {"__typename": "Query"}}
    mutation = 'mutation { scoreExplanation(input: {nodeId: "x", explanation: "e"}) { id } }'
    refused = httpx.get(f"{server.url}/graphql", params={"query": mutation}, timeout=30)
    assert refused.status_code == 405 and refused.headers["allow"] == "POST", refused.text
    ide = httpx.get(f"{server.url}/graphql", headers={"accept": "text/html"}, timeout=30)
    assert ide.status_code == 200 and "<" in ide.text


def test_a_body_over_the_limit_is_413(server: ServerProcess) -> None:
    big = httpx.post(f"{server.url}/graphql", content=b"{" + b" " * (2 * 1024 * 1024) + b"}", timeout=30,
                     headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413 and big.json()["errors"][0]["extensions"]["limit"] == "max_body_bytes"
