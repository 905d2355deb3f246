"""Safe to expose: each way a hostile (or merely careless) client once hurt the embedded default server,
tried again over real HTTP and WebSocket against real servers (issue 16, "Why").

Servers: ``live`` is the embedded default (tiny-gpt2 with both autoencoders, the demo dataset built
into a local folder store, no-LLM default methods); ``locked`` serves the same folder without a model
behind ``--api_key`` and ``--require_auth_for_all``; ``secret`` reads Azurite through a data-root URL
that carries a user and password.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.hardening_data import blob_port, upload
from tests.raw_http import RawClient, percentile
from tests.server import ServerProcess, error_codes

M = "tiny-gpt2"
KEY = "exposed-key-1"
PASSWORD = "hunter2-do-not-show"
STORED = f'{{ node(id: "{M}/mlp_neuron/0/3") {{ id topActivations(first: 2) {{ tokens }} }} }}'
PROMPT = (
    "query($p: String!, $a: [AblationInput!]) { prompt(text: $p, ablations: $a) { loss topLogits(k: 2) { token } } }"
)
SCORE_ALIAS = (
    'a{i}: scoreExplanation(input: {{nodeId: "{node}", explanation: "pattern {i}", method: TOKEN_LOOKUP}}) {{ id }}'
)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (hidden ones too): its size and modification time."""
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            stat = path.stat()
            out[path.relative_to(root).as_posix()] = (stat.st_size, stat.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exposed") / "store"


@pytest.fixture(scope="module")
def servers(store: Path, azurite: str) -> Iterator[dict[str, ServerProcess]]:
    upload(azurite, "exposed")
    no_llm = {"OPENAI_API_KEY": "", "NEURON_EXPLAINER_API_KEY": ""}
    live = ServerProcess(
        ["--model_name", M, "--mlp_autoencoder_name", "ae-tiny-mlp", "--attn_autoencoder_name", "ae-tiny-attn"]
        + ["--neuron_method", "top-tokens", "--attention_head_method", "top-tokens"]
        + ["--data_root", str(store), "--build_demo_dataset", "True"],
        env=no_llm,
    )
    live.start()  # first, alone: it builds the demo dataset the locked server then reads
    secret_root = f"http://exposer:{PASSWORD}@127.0.0.1:{blob_port(azurite)}/devstoreaccount1/exposed/"
    others = {
        "locked": ServerProcess(
            ["--run_model", "False", "--data_root", str(store), "--api_key", KEY, "--require_auth_for_all", "True"],
            env=no_llm,
        ),
        "secret": ServerProcess(
            ["--run_model", "False", "--data_root", secret_root], env={**no_llm, "AZURE_STORAGE_CONNECTION_STRING": ""}
        ),
    }
    try:
        with ThreadPoolExecutor(len(others)) as pool:
            for f in [pool.submit(p.start) for p in others.values()]:
                f.result()
        yield {"live": live, **others}
    finally:
        for p in [live, *others.values()]:
            p.stop()


@pytest.fixture(scope="module")
def live(servers: dict[str, ServerProcess]) -> ServerProcess:
    return servers["live"]


def _post(server: ServerProcess, payload: Any, timeout: float = 30, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/graphql", json=payload, timeout=timeout, **kwargs)


def _alive(server: ServerProcess) -> None:
    """The server answers a trivial query at once."""
    start = time.monotonic()
    body = _post(server, {"query": "{ __typename }"}, timeout=5, headers=_bearer(KEY)).json()
    assert body == {"data": {"__typename": "Query"}} and time.monotonic() - start < 2, body


# ---- reads never write (first: later tests write explanations and job logs) ---------------------------


def test_reads_never_write_the_store(live: ServerProcess, store: Path) -> None:
    before = _files(store)
    assert before, "the demo dataset was built"
    # A node of another model than the running one: nothing of tiny-gpt2 is rebuilt for it.
    other = httpx.get(
        f"{live.url}/graphql",
        params={"query": '{ node(id: "gpt2-small/mlp_neuron/1/3") { topActivations { tokens } } }'},
        headers={"Origin": "http://evil.example"},
        timeout=60,
    )
    assert other.status_code == 200 and error_codes(other.json()) == ["NOT_FOUND"], other.text
    assert "tiny-gpt2" in other.json()["errors"][0]["message"]  # says which model runs
    # A layer the running model lacks, an index past the layer, a negative count: the client's error.
    for query in (
        f'{{ node(id: "{M}/mlp_neuron/5/0") {{ topActivations {{ tokens }} }} }}',
        f'{{ node(id: "{M}/mlp_neuron/0/100000") {{ topActivations {{ tokens }} }} }}',
        f'{{ node(id: "{M}/mlp_neuron/0/1") {{ topActivations(first: -1) {{ tokens }} }} }}',
        '{ node(id: "gpt2-small/mlp_neuron/5/3") { topActivations(source: LIVE) { tokens } } }',
    ):
        body = _post(live, {"query": query}, timeout=60).json()
        assert error_codes(body) == ["BAD_USER_INPUT"], (query, body)
    # ``source: LIVE`` on a stored node computes it live without touching the stored dataset.
    body = _post(
        live, {"query": f'{{ node(id: "{M}/mlp_neuron/1/5") {{ topActivations(first: 3, source: LIVE) '
               "{ activations provenance { source dataset } } } }"}, timeout=120
    ).json()  # fmt: skip
    assert "errors" not in body, body
    records = body["data"]["node"]["topActivations"]
    assert len(records) == 3 and records[0]["provenance"]["source"] == "LIVE"
    live_dataset = records[0]["provenance"]["dataset"]
    stored = _post(
        live, {"query": f'{{ node(id: "{M}/mlp_neuron/1/5") {{ topActivations(first: 3) {{ provenance {{ dataset }} }} }} }}'}
    ).json()["data"]["node"]["topActivations"][0]["provenance"]["dataset"]  # fmt: skip
    assert live_dataset != stored, "a live build has a dataset of its own"
    after = _files(store)
    changed = sorted(p for p in before if after.get(p) != before[p])
    assert changed == [], f"reads rewrote stored files: {changed[:10]}"
    added = sorted(p for p in after if p not in before)
    assert not [p for p in added if "_checkpoints" in p or p.endswith(".lock")], added[:10]
    assert all(p.startswith(live_dataset) or p == "neuron-explainer-datasets.json" for p in added), added[:10]


def test_lock_files_do_not_accumulate(live: ServerProcess, store: Path) -> None:
    body = _post(
        live,
        {"query": "mutation { " + " ".join(SCORE_ALIAS.format(i=i, node=f"{M}/mlp_neuron/0/{i}") for i in range(4)) + " }"},
    ).json()  # fmt: skip
    assert "errors" not in body, body
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len([p for p in _files(store) if "by-method/token-lookup" in p]) < 4:
        time.sleep(0.2)
    locks = [p for p in _files(store) if p.endswith(".lock")]
    assert len(locks) <= 64, f"{len(locks)} lock files, e.g. {locks[:5]}"


# ---- bounded before any work ----------------------------------------------------------------------------


def _spread_bomb(n: int = 30) -> str:
    """``n`` fragments, each spreading the previous one twice: 2^n fields once expanded, ~1 KB of text."""
    parts = ["fragment F0 on Query { __typename }"]
    parts += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n)]
    return f"query Q {{ ...F{n - 1} }} " + " ".join(parts)


def test_a_spread_bomb_is_refused_at_once_even_before_the_key_check(servers: dict[str, ServerProcess]) -> None:
    bomb = _spread_bomb()
    assert len(bomb) < 1500
    for name, headers, code in (
        ("locked", {}, "UNAUTHENTICATED"),
        ("locked", _bearer(KEY), "LIMIT_EXCEEDED"),
        ("live", {}, "LIMIT_EXCEEDED"),
    ):
        start = time.monotonic()
        body = _post(servers[name], {"query": bomb}, timeout=10, headers=headers).json()
        assert time.monotonic() - start < 3, name
        assert error_codes(body) == [code], (name, body)
        assert body.get("data") is None
        _alive(servers[name])


def test_big_bodies_are_413_and_leave_memory_flat(live: ServerProcess) -> None:
    assert live.proc is not None
    before = rss_mb(live.proc.pid)
    with httpx.Client(timeout=60) as client:
        for i in range(36):
            query = '{ node(id: "%s") { id } }' % (f"{i}-" + "x" * (20 * 1024 * 1024))
            response = client.post(f"{live.url}/graphql", json={"query": query})
            assert response.status_code == 413, (response.status_code, response.text[:300])
            assert "1048576" in response.text or "1 MB" in response.text or "MiB" in response.text
    grown = rss_mb(live.proc.pid) - before
    assert grown < 100, f"the server grew by {grown:.0f} MB"
    _alive(live)


def test_introspection_is_priced(live: ServerProcess) -> None:
    one = _post(live, {"query": "{ __schema { types { name fields { name } } } }"}).json()
    assert "errors" not in one and len(one["data"]["__schema"]["types"]) > 20
    many = "{ " + " ".join(f"a{i}: __schema {{ types {{ name fields {{ name }} }} }}" for i in range(199)) + " }"
    start = time.monotonic()
    body = _post(live, {"query": many}).json()
    assert time.monotonic() - start < 2
    assert error_codes(body) == ["LIMIT_EXCEEDED"] and body.get("data") is None, str(body)[:500]
    assert body["errors"][0]["extensions"]["limit"] == "request_cost"


# ---- one client cannot fail another --------------------------------------------------------------------


def test_an_overflowing_ablation_fails_alone(live: ServerProcess) -> None:
    normal = [{"p": f"The cat number {i} sat on the mat and"} for i in range(40)]
    poison = [
        {"p": f"The dog number {i} ran", "a": [{"nodeId": f"{M}/mlp_neuron/0/{i}", "value": 1e308}]} for i in range(3)
    ]

    mixed = poison[:1] + normal[:20] + poison[1:] + normal[20:]

    async def run() -> list[tuple[int, Any]]:
        clients = [RawClient(live.port) for _ in range(43)]
        requests = [{"query": PROMPT, "variables": v} for v in mixed]
        try:
            return list(
                await asyncio.gather(*(c.post_json("/graphql", r) for c, r in zip(clients, requests, strict=True)))
            )
        finally:
            for c in clients:
                await c.close()

    answers = asyncio.run(run())
    bad = [a for a, r in zip(answers, mixed, strict=True) if "a" in r]
    good = [a for a, r in zip(answers, mixed, strict=True) if "a" not in r]
    assert all(status == 200 and not body.get("errors") for status, body in good), [
        b for _, b in good if b.get("errors")
    ][:2]
    assert all(error_codes(body) == ["BAD_USER_INPUT"] for _, body in bad), bad


def test_hundreds_of_free_jobs_are_bounded_per_caller(live: ServerProcess) -> None:
    node = f"{M}/mlp_neuron/1/7"
    assert live.proc is not None
    before = rss_mb(live.proc.pid)
    flood = "mutation { " + " ".join(SCORE_ALIAS.format(i=i, node=node) for i in range(199)) + " }"
    for _ in range(5):
        start = time.monotonic()
        body = _post(live, {"query": flood}).json()
        assert time.monotonic() - start < 5
        assert error_codes(body) == ["LIMIT_EXCEEDED"] and body.get("data") is None, str(body)[:500]
        assert body["errors"][0]["extensions"]["limit"] in ("request_cost", "jobs_in_flight")
    assert rss_mb(live.proc.pid) - before < 100
    _alive(live)


def test_stored_queries_stay_fast_under_a_flood_of_live_prompts(live: ServerProcess) -> None:
    """1,000 clients looping live prompts (honouring a retry hint when told to wait) while one client
    times a stored query and ``{ __typename }``: they never wait in the model's queue, so their p99 stays
    a small fraction of what a live prompt waits there, measured in the same window (issue 16's bug had
    them wait as long: 12 s). A ratio and not a time: on 2 shared cores both scale with how busy the box
    is (`bench/load.py` holds the absolute 250 ms target, on a quiet box).

    Timed once every flood client has had an answer: the thousand first requests, sent in the same
    millisecond, are each parsed and validated on the one event loop before any waits for the model
    (about a second of work on a quiet box, several on a loaded one), and a request that arrives among
    them waits its turn. A flood is what follows: clients looping, the model's queue full. The probe runs
    on a thread and event loop of its own, so what it times is the server, not this process's thousand
    flood clients ahead of it in one loop."""
    clients = 1000
    answered: set[int] = set()
    steady = threading.Event()
    done = threading.Event()
    latencies: list[float] = []
    live_latencies: list[float] = []
    probing = threading.Event()
    served = {"live": 0, "refused": 0}

    async def flood(i: int) -> None:
        client = RawClient(live.port)
        n = 0
        try:
            while not done.is_set():
                n += 1
                start = time.perf_counter()
                status, body = await client.post_json(
                    "/graphql", {"query": PROMPT, "variables": {"p": f"Client {i} asks for the {n}th time about"}}
                )
                if probing.is_set():
                    live_latencies.append(time.perf_counter() - start)
                ext = (body.get("errors") or [{}])[0].get("extensions", {})
                if ext.get("code") == "LIMIT_EXCEEDED" and ext.get("retryAfter") is not None:
                    served["refused"] += 1
                    await asyncio.sleep(float(ext["retryAfter"]))
                else:
                    assert status == 200 and not body.get("errors"), body
                    served["live"] += 1
                answered.add(i)
                if len(answered) == clients:
                    steady.set()
        finally:
            await client.close()

    async def probe() -> None:
        client = RawClient(live.port)
        try:
            give_up = time.monotonic() + 120
            while not await asyncio.to_thread(steady.wait, 0.5):
                if done.is_set():  # the flood failed: its error is the one to see
                    return
                assert time.monotonic() < give_up, "the flood never had every client answered"
            probing.set()
            stop = time.monotonic() + 5
            while time.monotonic() < stop:
                for query in (STORED, "{ __typename }"):
                    start = time.perf_counter()
                    status, body = await client.post_json("/graphql", {"query": query})
                    latencies.append(time.perf_counter() - start)
                    assert status == 200 and not body.get("errors"), body
                await asyncio.sleep(0.05)
        finally:
            done.set()
            await client.close()

    async def run() -> None:
        await asyncio.gather(*(flood(i) for i in range(clients)))

    with ThreadPoolExecutor(1) as pool:
        probed = pool.submit(asyncio.run, probe())
        try:
            asyncio.run(run())
        finally:
            done.set()
        probed.result()
    p99 = percentile(latencies, 0.99)
    live_p50 = percentile(live_latencies, 0.5)
    print(
        f"\nlive served {served['live']}, refused {served['refused']}; live p50 {live_p50 * 1000:.0f} ms;"
        f" stored/typename p50 {percentile(latencies, 0.5) * 1000:.0f} ms p99 {p99 * 1000:.0f} ms max {max(latencies) * 1000:.0f} ms"
    )
    assert served["live"] > 0 and len(latencies) > 20 and len(live_latencies) > 20
    assert p99 < live_p50 / 5, f"stored/typename p99 {p99 * 1000:.0f} ms, live p50 {live_p50 * 1000:.0f} ms"


# ---- GraphQL over HTTP and WebSocket -------------------------------------------------------------------


def test_subscriptions_over_http_are_refused_with_a_typed_error(live: ServerProcess) -> None:
    body = _post(live, {"query": 'subscription { jobEvents(jobId: "x") { seq } }'}).json()
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert "WebSocket" in body["errors"][0]["message"]


async def test_a_mutation_over_the_legacy_graphql_ws_protocol(live: ServerProcess) -> None:
    mutation = "mutation { " + SCORE_ALIAS.format(i=0, node=f"{M}/mlp_neuron/1/9") + " }"
    async with websockets.connect(live.ws_url, subprotocols=[websockets.Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "start", "id": "1", "payload": {"query": mutation}}))
        messages = []
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            message = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if message["type"] != "ka":
                messages.append(message)
    data = [m for m in messages if m["type"] == "data"]
    assert data and not data[0]["payload"].get("errors"), messages
    assert data[0]["payload"]["data"]["a0"]["id"]


@pytest.mark.parametrize("index", ["³", "\u0663", "３", "1²"])
def test_ids_with_non_ascii_digits_are_bad_input(live: ServerProcess, index: str) -> None:
    body = _post(
        live, {"query": "query($id: ID!) { node(id: $id) { id } }", "variables": {"id": f"{M}/mlp_neuron/0/{index}"}}
    )
    assert body.status_code == 200
    assert error_codes(body.json()) == ["BAD_USER_INPUT"], body.json()
    assert body.json()["data"] == {"node": None}


def test_a_deeply_nested_json_body_is_a_400(live: ServerProcess) -> None:
    deep = '{"query": "{ __typename }", "variables": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = httpx.post(f"{live.url}/graphql", content=deep, headers={"content-type": "application/json"}, timeout=30)
    assert response.status_code == 400, (response.status_code, response.text[:300])
    _alive(live)


def test_several_operations_need_an_operation_name(live: ServerProcess) -> None:
    two = "query A { __typename } mutation B { " + SCORE_ALIAS.format(i=0, node=f"{M}/mlp_neuron/1/11") + " }"
    body = _post(live, {"query": two}).json()
    assert body.get("data") is None and body["errors"], body
    assert "operationName" in body["errors"][0]["message"] or "operation name" in body["errors"][0]["message"]
    named = _post(live, {"query": two, "operationName": "A"}).json()
    assert named == {"data": {"__typename": "Query"}}, named


def test_health_hides_the_data_root_behind_require_auth_for_all(servers: dict[str, ServerProcess], store: Path) -> None:
    health = httpx.get(f"{servers['locked'].url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert "dataRoot" not in health.json() and str(store) not in health.text, health.text


def test_a_password_in_the_data_root_is_never_shown(servers: dict[str, ServerProcess]) -> None:
    server = servers["secret"]
    health = httpx.get(f"{server.url}/health", timeout=10)
    assert health.status_code == 200 and PASSWORD not in health.text, health.text
    body = _post(
        server, {"query": '{ datasets { name } node(id: "tiny-gpt2/mlp_neuron/0/1") { topActivations { tokens } } }'}
    )
    assert PASSWORD not in body.text
    assert PASSWORD not in server.log_path.read_text()
