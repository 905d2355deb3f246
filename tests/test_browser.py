"""The viewer and GraphiQL in Debian's Chromium (playwright-core) against a real server running the
embedded default (tiny-gpt2, demo dataset, no-LLM methods), and one serving stored data only. Each test
runs one node script under client/tests/ and compares what the page showed with what the server answers
directly. Screenshots land in artifacts/screenshots/ (the list: test_screenshots_are_all_there)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
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
NODE_ID = "tiny-gpt2/mlp_neuron/1/37"
HEAD_ID = "tiny-gpt2/attention_head/1/2"
PROMPT = "The cat sat on the mat, and the dog sat on the rug."
EXPLANATION = '"the"'
SCORE_METHOD = "token-lookup"
MAX_SEQUENCES = 49  # more than the node's valid split holds: the page must say how many it scored
CONTEXT_BEFORE, CONTEXT_AFTER = 16, 8  # client/src/viewer/tokens/Tokens.tsx

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


def centred_window(length: int, centre: int) -> tuple[int, int]:
    """The viewer's rule: 16 tokens before the max token, 8 after, widened at the edges."""
    size = CONTEXT_BEFORE + CONTEXT_AFTER + 1
    if length <= size:
        return 0, length
    start = max(0, centre - CONTEXT_BEFORE)
    end = min(length, start + size)
    return max(0, end - size), end


def argmax(values: list[float]) -> int:
    return values.index(max(values))


@pytest.fixture(scope="module")
def assets() -> None:
    build_assets()


@pytest.fixture(scope="module")
def server(assets: None, embedded_default: ServerProcess) -> ServerProcess:
    return embedded_default


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
    query = """subscription($id: ID!) { jobEvents(jobId: $id) { __typename
        ... on ExplanationProduced { text }
        ... on SequenceSimulated { index actual predicted sequenceScore }
        ... on JobProgress { done total } ... on JobCompleted { score } } }"""
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
        input={"nodeId": NODE_ID, "explanation": EXPLANATION, "method": "TOKEN_LOOKUP", "maxSequences": 2},
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


def default_query() -> str:
    source = (ROOT / "client" / "src" / "graphiql" / "main.tsx").read_text()
    found = re.search(r"export const DEFAULT_QUERY = `(.*?)`;", source, re.S)
    assert found is not None
    return found.group(1)


def test_graphiql_opens_with_a_default_query_that_runs(server: ServerProcess) -> None:
    """A first-time user's first click: run what GraphiQL opens with, unchanged."""
    body = server.query(default_query())
    assert not body.get("errors") and body["data"]["modelInfo"]["modelName"] == "tiny-gpt2", body
    report = run_script("graphiql", server, QUERY="default", EXPECT='"modelName": "tiny-gpt2"')
    assert report["defaultEditor"].startswith("# neuron-explainer"), report["defaultEditor"]
    assert '"errors"' not in report["response"] and '"datasets"' in report["response"], report["response"]


def test_viewer_node_page(server: ServerProcess) -> None:
    """Stats and histogram, centred records with their max, live prompt, Explain (streamed), scoring on
    more sequences than there are (said so), per-sequence simulated vs actual, state in the URL."""
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
        """query($id: ID!, $prompt: String!) { node(id: $id) { maxActivation
             stats { quantileBoundaries quantileLevels }
             topActivations(first: 20) { tokens activations normalizedActivations }
             randomSample(first: 10) { activations }
             activations(prompt: $prompt) { tokens activations } } }""",
        id=NODE_ID,
        prompt=PROMPT,
    )["node"]

    # The histogram: one bin between consecutive stored quantiles, each with its share of sequences.
    levels, bounds = node["stats"]["quantileLevels"], node["stats"]["quantileBoundaries"]
    assert levels == [0.5, 0.9, 0.99, 0.999]
    bins = report["histogramBins"]
    assert [b["mass"] for b in bins] == pytest.approx([b - a for a, b in zip([0, *levels], [*levels, 1], strict=True)])
    assert [b["hi"] for b in bins[:-1]] == pytest.approx(bounds) and bins[-1]["hi"] == pytest.approx(
        node["maxActivation"]
    )
    assert bins[0]["lo"] == pytest.approx(min(max(r["activations"]) for r in node["randomSample"]))

    # The first top record, centred on its max token, the max shown and outlined.
    top = node["topActivations"][0]
    centre = argmax(top["activations"])
    start, end = centred_window(len(top["tokens"]), centre)
    assert report["firstRecordWindow"] == [start, end] and end - start == 25 < len(top["tokens"])
    assert report["firstRecordMaxIndex"] == centre and report["markedIndices"] == [centre]
    assert report["firstRecordTokens"] == top["tokens"][start:end]
    assert report["firstRecordActivations"] == pytest.approx(top["activations"][start:end])
    assert report["firstRecordMaxShown"] == f"{max(top['activations']):.3f}"
    assert f"activation {top['activations'][centre]:.3f}" in report["tooltip"]
    for background, normalized in zip(
        report["firstRecordBackgrounds"], top["normalizedActivations"][start:end], strict=True
    ):
        alpha = min(1.0, abs(normalized))
        if alpha == 0:
            assert background == "rgba(0, 0, 0, 0)"
        else:
            shown = re.fullmatch(r"rgba?\((\d+), (\d+), (\d+)(?:, ([\d.]+))?\)", background)
            assert shown, background
            # Chromium keeps colour alpha in 8 bits: allow one 1/255 step besides the 3-decimal CSS value.
            assert float(shown.group(4) or 1) == pytest.approx(alpha, abs=1 / 255 + 1e-3)
    assert report["topRecords"] == 20 and report["randomRecords"] == 10
    assert report["fullWindow"] == [0, len(top["tokens"])]

    # The live prompt: the model's activations on the user's text, the prompt in the URL.
    live = node["activations"]
    assert report["liveTokens"] == live["tokens"]
    assert report["liveActivations"] == pytest.approx(live["activations"], abs=1e-6)
    assert "prompt=The+cat" in report["urlAfterPrompt"]

    # Explain: the job's own event log (replayed here) is what the page showed.
    explain = report["explain"]
    events = job_events(server, explain["jobId"])
    produced = [e for e in events if e["__typename"] == "ExplanationProduced"]
    completed = [e for e in events if e["__typename"] == "JobCompleted"]
    simulated = [e for e in events if e["__typename"] == "SequenceSimulated"]
    assert len(produced) == 1 and explain["explanation"] == produced[0]["text"]
    assert float(explain["scoreText"].removeprefix("Score:").strip()) == pytest.approx(completed[0]["score"], abs=5e-4)
    assert explain["sequenceCount"] == len(simulated) > 0 and f"job={explain['jobId']}" in explain["url"]
    first = next(e for e in simulated if e["index"] == explain["firstSequence"]["index"])
    s0, e0 = centred_window(len(first["actual"]), argmax(first["actual"]))
    assert explain["firstSequence"]["actual"] == pytest.approx(first["actual"][s0:e0])
    assert explain["firstSequence"]["predicted"] == pytest.approx(first["predicted"][s0:e0])
    assert explain["firstSequence"]["score"] == f"{first['sequenceScore']:.3f}"

    # Scoring on 49 sequences: the node's valid split holds fewer, and the page says how many.
    scored = report["score"]
    events = job_events(server, scored["jobId"])
    progress = [e for e in events if e["__typename"] == "JobProgress"]
    completed = [e for e in events if e["__typename"] == "JobCompleted"]
    total = progress[-1]["total"]
    assert 0 < total < MAX_SEQUENCES
    assert scored["notice"].startswith(f"Scoring on {total} sequences: {MAX_SEQUENCES} were asked for"), scored[
        "notice"
    ]
    assert scored["progressMax"] == total == scored["progressNow"] == scored["sequenceCount"]
    score = completed[0]["score"]
    assert score is not None and math.isfinite(score)
    assert float(scored["scoreText"].removeprefix("Score:").strip()) == pytest.approx(score, abs=5e-4)
    # The scored explanation was stored; the page refetched and listed it with its score and method.
    assert any(
        line.startswith(EXPLANATION) and f"score {score:.3f}" in line and SCORE_METHOD in line
        for line in report["explanationsAfterScoring"]
    ), report["explanationsAfterScoring"]
    # A reload (the URL alone) brought back the job, replayed to its end, and the prompt.
    assert (
        report["afterReload"]["jobId"] == scored["jobId"] and report["afterReload"]["scoreText"] == scored["scoreText"]
    )
    assert report["promptAfterReload"] == PROMPT

    # Neighbours: the next index, and back.
    assert report["nextNodeId"] == "tiny-gpt2/mlp_neuron/1/38" and report["backNodeId"] == NODE_ID
    assert {"prev-index", "next-index", "prev-layer", "browse-layer"} <= set(report["neighbourLinks"])
    assert "next-layer" not in report["neighbourLinks"]  # tiny-gpt2 has 2 layers: there is no layer 2


def test_attention_head_page(server: ServerProcess) -> None:
    """Pick a query token: its keys are highlighted with the server's attentionRows values."""
    report = run_script("head", server, NODE_ID=HEAD_ID, PICK_QUERY="3", RANDOM_RECORD="1", RANDOM_PICK="5")
    node = graphql(
        server,
        "query($id: ID!) { node(id: $id) { topActivations(first: 20) { tokens attentionRows } "
        "randomSample(first: 10) { attentionRows } } }",
        id=HEAD_ID,
    )["node"]
    rows = node["topActivations"][0]["attentionRows"]
    n = len(rows)
    strongest = max(range(n), key=lambda q: (max(rows[q]), -q))
    assert report["defaultRecord"] == "top record 0" and report["defaultQuery"] == strongest
    assert report["matrixCells"] == n * (n + 1) // 2  # one cell per (query, key <= query) pair
    assert report["pickedKeys"] == pytest.approx(rows[3] + [0.0] * (n - 4))
    assert report["selectedRowCells"] == 4 and "rec=top%3A0&q=3" in report["urlAfterPick"]
    random_rows = node["randomSample"][1]["attentionRows"]
    assert report["randomQuery"] == 5
    assert report["randomKeys"] == pytest.approx(random_rows[5] + [0.0] * (len(random_rows) - 6))
    assert report["afterReload"] == {"record": "random record 1", "query": 5}
    per_query = [max(r) for r in rows]
    start, end = centred_window(n, strongest)
    assert report["topRecordValues"] == pytest.approx(per_query[start:end])


def test_browse_a_layer_and_jump_by_id(server: ServerProcess) -> None:
    report = run_script("browse", server, KIND="MLP_NEURON", LAYER="1", JUMP_TO="tiny-gpt2/ae-tiny-attn/1/9")
    first = [f"tiny-gpt2/mlp_neuron/1/{i}" for i in range(20)]
    second = [f"tiny-gpt2/mlp_neuron/1/{i}" for i in range(20, 40)]
    assert report["firstPage"] == first and report["previousDisabled"] is True
    assert report["secondPage"] == second and report["backPage"] == first
    assert report["secondAfterReload"] == second and "after=" in report["urlSecond"] and "before=" in report["urlBack"]
    page = graphql(
        server,
        '{ nodes(model: "tiny-gpt2", kind: MLP_NEURON, layer: 1, first: 20) { edges { node { maxActivation } } } }',
    )
    assert report["firstMax"] == [f"{e['node']['maxActivation']:.3f}" for e in page["nodes"]["edges"]]
    assert report["rowLinkNode"] == second[0] and report["jumpedTo"] == "tiny-gpt2/ae-tiny-attn/1/9"
    assert report["favicon"] == {"href": "/favicon.ico", "status": 200, "type": "image/svg+xml"}


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


def test_attention_head_from_stored_data_only(fixtures_server: ServerProcess) -> None:
    """A head of the public format on a server without a model: the same page, no histogram levels."""
    head = "gpt2-small/attention_head/0/1"
    report = run_script(
        "head",
        fixtures_server,
        NODE_ID=head,
        PICK_QUERY="1",
        RANDOM_RECORD="0",
        RANDOM_PICK="1",
        SHOT="viewer-head-stored",
    )
    node = graphql(
        fixtures_server, "query($id: ID!) { node(id: $id) { topActivations(first: 1) { attentionRows } } }", id=head
    )
    rows = node["node"]["topActivations"][0]["attentionRows"]
    assert report["pickedKeys"] == pytest.approx(rows[1] + [0.0] * (len(rows) - 2))


def test_viewer_waits_for_a_starting_server(assets: None, tmp_path: Path) -> None:
    """Opened while the server starts (slowed by a test fault), the viewer says what the server is doing
    and shows the home page by itself once ready."""
    env = {"NEURON_EXPLAINER_TEST_FAULTS": json.dumps({"start_delay_s": 4})}
    server = ServerProcess(["--run_model", "False", "--data_root", str(TDB_FIXTURES)], env=env)
    log = server.log_path.open("wb")
    server.proc = subprocess.Popen(server.args, env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{server.url}/health/live"):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        report = run_script("starting", server)
    finally:
        server.stop()
    assert "The server is starting (waiting 4.0 s (test fault))" in report["startingText"], report["startingText"]
    assert report["homeShown"] and report["readyPolls"][0] == 503 and report["readyPolls"][-1] == 200


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


# The prompt page: TDB's indirect-object prompt, its clean twin for patching (the same token count).
IOI = "When Mary and John went to the store, John gave a drink to"
IOI_CLEAN = "When Mary and John went to the store, Mary gave a drink to"
LOSS = {"targetTokens": [" Mary"], "distractorTokens": [" John"]}
COLUMNS = ("activation", "writeNorm", "actTimesGrad", "directEffect")
ROW = "kind node { id } token keyToken"
TABLE_QUERY = f"""query($text: String!, $target: TargetInput!, $ablations: [AblationInput!], $kinds: [NodeTableKind!]) {{
  prompt(text: $text, ablations: $ablations, target: $target) {{ targetValue tokenAttribution
    nodeTable(k: 10, kinds: $kinds) {{ {ROW} {" ".join(COLUMNS)} }} }} }}"""
SIDES = " ".join(f"{side} {{ {' '.join(COLUMNS)} }}" for side in ("left", "right", "difference"))
COMPARE_QUERY = f"""query($text: String!, $target: TargetInput!, $ablations: [AblationInput!], $kinds: [NodeTableKind!]) {{
  prompt(text: $text, target: $target) {{ targetValue
    compareWith(ablations: $ablations) {{ other {{ targetValue tokenAttribution }}
      nodeTable(k: 10, kinds: $kinds) {{ {ROW} {SIDES} }} }} }} }}"""


README_PROMPT_URLS = re.findall(r"`(/\?prompt=[^`]+)`", (ROOT / "README.md").read_text(encoding="utf-8"))


def _key(kind: str, node: str | None, token: int, key_token: int | None) -> tuple[str, str | None, int, int | None]:
    return kind, node, token, key_token


def page_rows(state: dict[str, Any]) -> dict[tuple[str, str | None, int, int | None], dict[str, float]]:
    """The rows a page state showed, keyed by (kind, node, token, key token)."""
    return {
        _key(r["kind"], r["node"], r["token"], r["keyToken"]): {
            k: v for k, v in r.items() if k not in ("kind", "node", "token", "keyToken")
        }
        for r in state["rows"]
    }


def server_rows(rows: list[dict[str, Any]]) -> dict[tuple[str, str | None, int, int | None], dict[str, float]]:
    """The server's node table in the same shape (compare rows flattened to `column-side`)."""
    out = {}
    for r in rows:
        node = r["node"]["id"] if r["node"] else None
        values: dict[str, float] = {}
        for c in COLUMNS:
            if c in r:
                values[c] = r[c]
            for side in ("left", "right", "difference"):
                if side in r:
                    values[f"{c}-{side}"] = r[side][c]
        out[_key(r["kind"], node, r["token"], r["keyToken"])] = values
    return out


def assert_same_table(shown: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    got, want = page_rows(shown), server_rows(rows)
    assert set(got) == set(want)
    for key, values in want.items():
        assert got[key] == pytest.approx(values, abs=1e-6), key


def test_prompt_page(server: ServerProcess) -> None:
    """TDB's main view: the node table, then ablate, patch and trace by a click, two conditions side by
    side; each change one query and the page's state in the URL (back, forward, reload)."""
    report = run_script(
        "prompt",
        server,
        PROMPT=IOI,
        TARGET=" Mary",
        DISTRACTOR=" John",
        FROM=IOI_CLEAN,
        BAD_TARGET=" Mary Ann",
        LAST_LAYER="1",
        README_URLS=json.dumps(README_PROMPT_URLS),
    )

    def table(
        target: dict[str, Any], ablations: list[dict[str, Any]], kinds: list[str] | None = None
    ) -> dict[str, Any]:
        variables = {"text": IOI, "target": target, "ablations": ablations, "kinds": kinds}
        prompt: dict[str, Any] = graphql(server, TABLE_QUERY, **variables)["prompt"]
        return prompt

    # The table for the prompt and its logit-diff target; token attribution coloured on the prompt.
    initial = table(LOSS, [])
    assert_same_table(report["initial"], initial["nodeTable"])
    assert report["initial"]["attribution"] == pytest.approx(initial["tokenAttribution"], abs=1e-6)
    assert report["initial"]["targetValue"] == pytest.approx(initial["targetValue"], abs=1e-6)
    assert len(report["tokens"]) == 14 and report["initial"]["topLogits"]

    # Ablate by a click: in the URL, one request, and the server's table under that ablation.
    a = report["ablated"]
    ablation = {"nodeId": a["node"], "tokenIndices": [a["token"]], "value": 0}
    assert "abl=tiny-gpt2%2Fmlp_neuron%2F" in report["afterAblation"]["url"] and report["ablateRequests"] == 1
    ablated = table(LOSS, [ablation])
    assert_same_table(report["afterAblation"], ablated["nodeTable"])
    assert page_rows(report["afterAblation"]) != page_rows(report["initial"])
    assert ablated["targetValue"] != pytest.approx(initial["targetValue"])
    assert report["ablationChips"][0].startswith(f"{a['node']}@{a['token']} = 0")

    # Patch another row from the clean prompt.
    pa = report["patched"]
    patch = {"nodeId": pa["node"], "tokenIndices": [pa["token"]], "fromPrompt": IOI_CLEAN}
    assert "patch=" in report["afterPatch"]["url"] and report["patchRequests"] == 1
    assert_same_table(report["afterPatch"], table(LOSS, [ablation, patch])["nodeTable"])

    # The kinds filter (heads only), then trace from a last-layer head's (query, key) pair.
    assert report["kindRequests"] == [1, 1] and "kinds=ATTENTION_HEAD" in report["headsOnly"]["url"]
    assert {k[0] for k in page_rows(report["headsOnly"])} == {"ATTENTION_HEAD"}
    t = report["traced"]
    assert t["node"].startswith("tiny-gpt2/attention_head/1/") and t["keyToken"] is not None
    trace = {**LOSS, "node": t["node"], "token": t["token"], "keyToken": t["keyToken"]}
    traced = table(trace, [ablation, patch], ["ATTENTION_HEAD"])
    assert report["traceRequests"] == 1 and "trace=" in report["afterTrace"]["url"]
    assert_same_table(report["afterTrace"], traced["nodeTable"])
    assert report["afterTrace"]["targetValue"] == pytest.approx(traced["targetValue"], abs=1e-6)
    assert f"tracing {t['node']} at token {t['token']} (key {t['keyToken']})" in report["traceSummary"]

    # Two conditions side by side: left without the ablations, right with them, and right - left.
    variables = {"text": IOI, "target": trace, "ablations": [ablation, patch], "kinds": ["ATTENTION_HEAD"]}
    compared = graphql(server, COMPARE_QUERY, **variables)["prompt"]
    assert report["compareRequests"] == 1 and "compare=1" in report["compare"]["url"]
    assert_same_table(report["compare"], compared["compareWith"]["nodeTable"])
    assert any(abs(v.get("actTimesGrad-difference", 0)) > 0 for v in page_rows(report["compare"]).values())
    assert report["compare"]["targetValue"] == pytest.approx(compared["targetValue"], abs=1e-6)
    assert report["compareRight"] == pytest.approx(compared["compareWith"]["other"]["tokenAttribution"], abs=1e-6)

    # Back, forward and reload come from the URL alone; sorting is view state (no request).
    assert page_rows(report["afterBack"]) == page_rows(report["afterTrace"]) and report["backRequests"] <= 1
    assert page_rows(report["afterForward"]) == page_rows(report["compare"])
    assert page_rows(report["afterReload"]) == page_rows(report["compare"])
    assert report["sortRequests"] == 0 and "sort=directEffect" in report["sortUrl"]
    assert report["linkedNode"] == report["nodePageId"]

    # The README's prompt-page links work as written on the embedded default.
    assert len(report["readme"]) == len(README_PROMPT_URLS) >= 2
    for opened in report["readme"]:
        assert opened["rows"] > 0 and not opened["errors"], opened
    assert {opened["mode"] for opened in report["readme"]} == {"table", "compare"}

    # A target that is not one token: one readable BAD_USER_INPUT naming it; the tokens still shown.
    error = report["error"]
    assert error["code"] == "BAD_USER_INPUT" and error["count"] == 1
    assert "' Mary Ann' is 2 tokens" in error["message"] and error["tokensShown"] == 14


def assert_same_tokens(shown: list[dict[str, Any]], tokens: list[dict[str, Any]]) -> None:
    assert [t["token"] for t in shown] == [t["token"] for t in tokens]
    assert [t["value"] for t in shown] == pytest.approx([t["value"] for t in tokens], abs=1e-6)


def test_node_page_logit_lens(server: ServerProcess) -> None:
    """The node's output tokens (promoted, suppressed) and input tokens, a head's per side; the link to
    trace the node on a prompt opens the prompt page traced from it."""
    lens = """query($id: ID!) { node(id: $id) { up: outputTokens(k: 10) { token value }
        down: outputTokens(k: 10, lowest: true) { token value } input: inputTokens(k: 10) { token value } } }"""
    report = run_script("lens", server, NODE_ID=NODE_ID)
    node = graphql(server, lens, id=NODE_ID)["node"]
    assert_same_tokens(report["lists"]["lens-upvoted"], node["up"])
    assert_same_tokens(report["lists"]["lens-downvoted"], node["down"])
    assert_same_tokens(report["lists"]["lens-input"], node["input"])
    assert report["lensErrors"] == 0 and not report["errors"]
    assert "trace=tiny-gpt2%2Fmlp_neuron%2F1%2F37%40" in report["promptUrl"] and report["tracedRows"] > 0
    assert report["traceSummary"].startswith(f"tracing {NODE_ID} at token ")

    head = run_script("lens", server, NODE_ID=HEAD_ID, SHOT="node-logit-lens-head")
    sides = graphql(
        server,
        "query($id: ID!) { node(id: $id) { q: inputTokens(k: 10, path: Q) { token value } "
        "k: inputTokens(k: 10, path: K) { token value } } }",
        id=HEAD_ID,
    )["node"]
    assert set(head["lists"]) == {"lens-input-q", "lens-input-k"} and head["lensErrors"] == 0
    assert_same_tokens(head["lists"]["lens-input-q"], sides["q"])
    assert_same_tokens(head["lists"]["lens-input-k"], sides["k"])
    assert "(key " in head["traceSummary"] and head["tracedRows"] > 0


SCREENSHOT_NAMES = [
    "graphiql", "graphiql-subscription", "graphiql-default-query",
    "viewer-node", "viewer-live-prompt", "viewer-explain", "viewer-score",
    "viewer-head", "viewer-head-query-picked", "viewer-head-stored", "viewer-head-stored-query-picked",
    "viewer-home", "viewer-browse", "viewer-starting",
    "viewer-error-layer-out-of-range", "viewer-error-malformed-id", "viewer-error-no-record",
    "viewer-error-model-not-loaded", "viewer-error-unhandled-rejection",
    "prompt-table", "prompt-ablated", "prompt-patched", "prompt-traced", "prompt-compare", "prompt-error",
    "node-logit-lens", "node-logit-lens-head",
]  # fmt: skip


def test_screenshots_are_all_there() -> None:
    """Runs last in this module: every page above left its screenshot (the issue's note lists them)."""
    missing = [name for name in SCREENSHOT_NAMES if not (SCREENSHOTS / f"{name}.png").is_file()]
    assert not missing, missing
