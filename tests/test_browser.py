"""The viewer page and GraphiQL in Debian's Chromium (playwright-core) against a real server running the
embedded default (tiny-gpt2, demo dataset, no-LLM methods). Each test runs one node script under
client/tests/ and compares what the page showed with what the server answers directly. Screenshots land
in artifacts/screenshots/."""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect
from websockets.typing import Subprotocol

from tests.client_build import ROOT, build_assets, run_tool
from tests.server import ServerProcess

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TDB_FIXTURES = ROOT / "tests" / "fixtures" / "tdb"
NODE_ID = "tiny-gpt2/mlp_neuron/0/0"
PROMPT = "The cat sat on the mat, and the dog sat on the rug."
EXPLANATION = '"the"'
SCORE_METHOD = "token-lookup"
MAX_SEQUENCES = 4

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")

EMBEDDED_DEFAULT = [
    "--model_name", "tiny-gpt2",
    "--mlp_autoencoder_name", "ae-tiny-mlp",
    "--attn_autoencoder_name", "ae-tiny-attn",
    "--neuron_method", "top-tokens",
    "--attention_head_method", "top-tokens",
]  # fmt: skip


@pytest.fixture(scope="module")
def assets() -> None:
    build_assets()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-store")


@pytest.fixture(scope="module")
def server(assets: None, data_root: Path) -> Iterator[ServerProcess]:
    args = [*EMBEDDED_DEFAULT, "--data_root", str(data_root), "--build_demo_dataset", "True"]
    with ServerProcess(args, startup_timeout=300) as s:
        yield s


@pytest.fixture(scope="module")
def fixtures_server(assets: None) -> Iterator[ServerProcess]:
    """No model (`--run_model False`) over the hand-written TDB fixtures: stored fields work, live ones
    are MODEL_NOT_LOADED, and there are attention-head records."""
    with ServerProcess(["--run_model", "False", "--data_root", str(TDB_FIXTURES)]) as s:
        yield s


def run_script(name: str, server: ServerProcess, **env: str) -> dict[str, Any]:
    """Runs client/tests/<name>.mjs against the server; returns its findings, failing with its reason."""
    started = time.time()
    done = run_tool(
        ["node", f"client/tests/{name}.mjs"],
        timeout=300,
        env={**os.environ, "BASE_URL": server.url, "SCREENSHOT_DIR": str(SCREENSHOTS), **env},
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{name}.mjs printed no report (exit {done.returncode}):\n{done.stdout}\n{done.stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert report["ok"] and done.returncode == 0, f"{report['failure']}\n{done.stderr}\nserver log:\n{server.log()}"
    for shot in report.get("screenshots", []):
        assert Path(shot).stat().st_mtime >= started - 1, f"{shot} is left from an earlier run"
    return report


def graphql(server: ServerProcess, query: str, **variables: Any) -> dict[str, Any]:
    body = server.query(query, variables)
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def job_events(server: ServerProcess, job_id: str) -> list[dict[str, Any]]:
    """The job's whole event log, replayed over graphql-transport-ws (what the page subscribed to)."""
    query = """subscription($id: ID!) { jobEvents(jobId: $id) {
        __typename ... on JobProgress { done total } ... on JobCompleted { score } } }"""
    events: list[dict[str, Any]] = []
    with connect(server.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")], open_timeout=10) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "connection_ack"
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": {"id": job_id}}}))
        while True:
            message = json.loads(ws.recv(timeout=60))
            if message["type"] == "complete":
                return events
            assert message["type"] == "next", message
            assert not message["payload"].get("errors"), message
            events.append(message["payload"]["data"]["jobEvents"])


def test_graphiql_page_loads_only_local_assets(server: ServerProcess) -> None:
    page = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
    assert "graphiql.js" in page.text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text), page.text


def test_graphiql_renders_offline_and_executes_a_query(server: ServerProcess) -> None:
    job = graphql(
        server,
        "mutation($input: ScoreExplanationInput!) { scoreExplanation(input: $input) { id } }",
        input={"nodeId": NODE_ID, "explanation": EXPLANATION, "method": SCORE_METHOD, "maxSequences": 2},
    )["scoreExplanation"]
    report = run_script(
        "graphiql",
        server,
        QUERY="query Probe { modelInfo { modelName running } }",
        EXPECT='"modelName": "tiny-gpt2"',
        SUBSCRIPTION=f'subscription Follow {{ jobEvents(jobId: "{job["id"]}") {{ __typename seq }} }}',
        EXPECT_SUBSCRIPTION='"JobCompleted"',
    )
    assert report["blocked"] == []
    assert '"running": true' in report["response"]
    # The subscription ran over graphql-ws on /graphql and showed the job's last event.
    assert '"__typename": "JobCompleted"' in report["subscriptionResponse"]
    # Monaco's language workers came from this server, not a CDN.
    assert {Path(w).name for w in report["workers"]} >= {"editor.worker.js", "graphql.worker.js"}
    assert all(a.startswith(("/graphql", "/static/graphiql/")) for a in report["assets"]), report["assets"]


def test_viewer_heatmap_live_prompt_and_scoring(server: ServerProcess) -> None:
    report = run_script(
        "viewer",
        server,
        NODE_ID=NODE_ID,
        PROMPT=PROMPT,
        EXPLANATION=EXPLANATION,
        SCORE_METHOD=SCORE_METHOD,
        MAX_SEQUENCES=str(MAX_SEQUENCES),
    )
    node = graphql(
        server,
        """query($id: ID!, $prompt: String!) { node(id: $id) {
             topActivations(first: 1) { tokens activations normalizedActivations }
             activations(prompt: $prompt) { tokens activations } } }""",
        id=NODE_ID,
        prompt=PROMPT,
    )["node"]

    # The heatmap shows the server's top record, coloured by normalized activation.
    top = node["topActivations"][0]
    assert report["firstRecordTokens"] == top["tokens"]
    assert report["firstRecordActivations"] == pytest.approx(top["activations"])
    for background, normalized in zip(report["firstRecordBackgrounds"], top["normalizedActivations"], strict=True):
        alpha = min(1.0, abs(normalized))
        if alpha == 0:
            assert background == "rgba(0, 0, 0, 0)"
        else:
            shown = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", background)
            assert shown, background
            assert float(shown.group(4) or 1) == pytest.approx(alpha, abs=2e-3)
    hovered = report["hoveredIndex"]
    assert f"activation {top['activations'][hovered]:.3f}" in report["tooltip"]

    # The live prompt shows the model's activations on the user's text.
    live = node["activations"]
    assert report["liveTokens"] == live["tokens"]
    assert report["liveActivations"] == pytest.approx(live["activations"], abs=1e-6)

    # The progress bar followed the job's events to the end, and the page shows the job's final score.
    events = job_events(server, report["jobId"])
    progress = [e for e in events if e["__typename"] == "JobProgress"]
    completed = [e for e in events if e["__typename"] == "JobCompleted"]
    assert len(completed) == 1 and progress, events
    assert report["progressMax"] == progress[-1]["total"] == report["progressNow"] > 0
    assert report["progressWidth"] == "100%"
    shown_score = float(report["scoreText"].removeprefix("Score:").strip())
    score = completed[0]["score"]
    assert score is not None and math.isfinite(score)
    assert shown_score == pytest.approx(score, abs=5e-4)
    # The scored explanation was stored, and the page refetched and listed it with its score and method.
    assert any(
        line.startswith(EXPLANATION) and f"score {score:.3f}" in line and SCORE_METHOD in line
        for line in report["explanationsAfterScoring"]
    ), report["explanationsAfterScoring"]


def test_viewer_shows_typed_errors_readably(fixtures_server: ServerProcess) -> None:
    report = run_script(
        "errors",
        fixtures_server,
        CASES=json.dumps(
            [
                {"name": "layer-out-of-range", "node": "gpt2-small/mlp_neuron/99/0"},
                {"name": "malformed-id", "node": "not a node id"},
                {"name": "no-record", "node": "gpt2-small/mlp_neuron/5/3000"},
                {"name": "model-not-loaded", "node": "gpt2-small/mlp_neuron/0/1", "prompt": PROMPT},
            ]
        ),
    )
    cases = {c["name"]: c for c in report["cases"]}
    assert {name: c["code"] for name, c in cases.items()} == {
        "layer-out-of-range": "BAD_USER_INPUT",
        "malformed-id": "BAD_USER_INPUT",
        "no-record": "NOT_FOUND",
        "model-not-loaded": "MODEL_NOT_LOADED",
    }
    assert "99" in cases["layer-out-of-range"]["message"]
    assert "5/3000" in cases["no-record"]["message"]
    assert cases["model-not-loaded"]["title"] == "No model is loaded on this server"
    assert "provoked by errors.mjs" in report["provokedBanner"]


def test_attention_head_heatmap_shows_each_query_tokens_strongest_pair(
    fixtures_server: ServerProcess,
) -> None:
    head = "gpt2-small/attention_head/0/1"
    report = run_script("viewer", fixtures_server, NODE_ID=head, STEPS="node", SHOT="viewer-head")
    node = graphql(
        fixtures_server,
        "query($id: ID!) { node(id: $id) { topActivations(first: 1) { tokens attentionRows } } }",
        id=head,
    )["node"]
    top = node["topActivations"][0]
    assert report["firstRecordTokens"] == top["tokens"]
    assert report["firstRecordActivations"] == pytest.approx([max(row, default=0) for row in top["attentionRows"]])
