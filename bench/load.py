"""Load benchmark: N concurrent clients against one real server on loopback for a bounded time.

Each client loops over a mix of operations, one at a time, as fast as the server answers:
- ``stored``: one node's top records and stats (a random node of 40 on Azurite);
- ``live``: one node's activations on a random prompt (``Node.activations``);
- ``prompt``: a prompt's loss, top logits and top MLP neurons (``Query.prompt``);
- ``subscription``: start a no-LLM score job (``scoreExplanation``, method token-lookup) and follow its
  ``jobEvents`` over a WebSocket to the end.
The live kinds run only when the server has a model (``modelInfo.running``). The server runs the
embedded default model (tiny-gpt2) with its data on Azurite unless ``--data_root`` names another.

Prints requests served, errors and p50/p99 latency per kind, and the server's resident memory after a
warm-up and at the end; ends with the two figures the hardening issue asks for:
    bench load_errors: N (target <= 0) PASS|FAIL
    bench load_memory_growth_mb: X (target <= 200) PASS|FAIL
Then, with a model, the flood (issue 16): ``--flood_clients`` (1,000) minimal keep-alive clients loop live
prompts (``Query.prompt``; a ``LIMIT_EXCEEDED`` refusal's ``retryAfter`` is honoured) while one client
times ``{ __typename }`` and a stored query every 50 ms; their p99 must stay under 250 ms:
    bench load_flood_typename_p99_ms: X (target <= 250) PASS|FAIL
    bench load_flood_stored_p99_ms: X (target <= 250) PASS|FAIL
Run: ``.venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--flood_clients 1000] [--flood_seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.lines import passes, report  # noqa: E402
from tests.azurite import AzuriteProcess  # noqa: E402
from tests.hardening_data import N_NODES, data_root, neuron, upload  # noqa: E402
from tests.raw_http import RawClient  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

STORED = (
    "query($id: ID!) { node(id: $id) { id topActivations(first: 5) { tokens activations } stats { mean variance } } }"
)
LIVE = "query($id: ID!, $p: String!) { node(id: $id) { activations(prompt: $p) { tokens activations } } }"
PROMPT = (
    "query($p: String!) { prompt(text: $p) { tokens loss topLogits(k: 5) { token probability } "
    "topNodes(kind: MLP_NEURON, k: 5) { node { id } token value } } }"
)
SCORE = "mutation($input: ScoreExplanationInput!) { scoreExplanation(input: $input) { id } }"
SUBSCRIBE = "subscription($id: ID!) { jobEvents(jobId: $id) { __typename seq } }"
PROMPTS = [
    "The cat sat on the mat.",
    "A big dog ran to the house and barked at the tree.",
    "Paris is the capital of France, and Rome is the capital of",
    "one two three four five six seven eight nine ten",
    "In 1969, the first people walked on the moon.",
]
EXPLANATIONS = ["cats", "dogs", "cats and dogs", "the mat", "animals"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Load:
    def __init__(self, url: str, ws_url: str, live: bool) -> None:
        self.url = url
        self.ws_url = ws_url
        self.kinds = (
            ["stored", "stored", "live", "prompt", "subscription"] if live else ["stored", "stored", "subscription"]
        )
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.examples: list[str] = []

    async def one(self, client: httpx.AsyncClient, kind: str, rng: random.Random) -> None:
        started = time.perf_counter()
        try:
            if kind == "subscription":
                await self.subscription(client, rng)
            else:
                query, variables = self.request(kind, rng)
                response = await client.post("/graphql", json={"query": query, "variables": variables})
                body = response.json()
                if response.status_code != 200 or body.get("errors"):
                    raise RuntimeError(f"{response.status_code}: {json.dumps(body.get('errors'))[:300]}")
        except Exception as exc:
            self.errors[kind] += 1
            if len(self.examples) < 5:
                self.examples.append(f"{kind}: {type(exc).__name__}: {exc}")
            return
        self.latency[kind].append(time.perf_counter() - started)

    @staticmethod
    def request(kind: str, rng: random.Random) -> tuple[str, dict[str, Any]]:
        node = neuron(rng.randrange(N_NODES))
        if kind == "stored":
            return STORED, {"id": node}
        if kind == "live":
            return LIVE, {"id": node, "p": rng.choice(PROMPTS)}
        return PROMPT, {"p": rng.choice(PROMPTS)}

    async def subscription(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        fields = {"nodeId": neuron(rng.randrange(N_NODES)), "explanation": rng.choice(EXPLANATIONS)}
        response = await client.post(
            "/graphql", json={"query": SCORE, "variables": {"input": {**fields, "method": "TOKEN_LOOKUP"}}}
        )
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(json.dumps(body["errors"])[:300])
        job_id = body["data"]["scoreExplanation"]["id"]
        async with websockets.connect(self.ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(
                json.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": job_id}}}
                )
            )
            last = None
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 60))
                if message["type"] == "next":
                    if message["payload"].get("errors"):
                        raise RuntimeError(json.dumps(message["payload"]["errors"])[:300])
                    last = message["payload"]["data"]["jobEvents"]["__typename"]
                elif message["type"] == "complete":
                    break
                else:
                    raise RuntimeError(f"subscription got {message}")
            if last != "JobCompleted":
                raise RuntimeError(f"job {job_id} ended with {last}")

    async def client(self, index: int, deadline: float) -> None:
        rng = random.Random(index)
        async with httpx.AsyncClient(base_url=self.url, timeout=120) as client:
            turn = index
            while time.monotonic() < deadline:
                await self.one(client, self.kinds[turn % len(self.kinds)], rng)
                turn += 1

    async def run(self, clients: int, seconds: float, pid: int | None = None) -> tuple[float, list[float]]:
        """Elapsed seconds, and the server's RSS (MB) sampled every 5 s while the clients ran."""
        started = time.monotonic()
        samples: list[float] = []

        async def sample() -> None:
            while pid is not None:
                samples.append(rss_mb(pid))
                await asyncio.sleep(5)

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(self.client(i, started + seconds) for i in range(clients)))
        sampler.cancel()
        return time.monotonic() - started, samples


FLOOD_PROMPT = "query($p: String!) { prompt(text: $p) { loss topLogits(k: 2) { token } } }"


async def flood(port: int, clients: int, seconds: float) -> tuple[dict[str, list[float]], dict[str, int]]:
    """``clients`` looping live prompts while a probe times ``{ __typename }`` and a stored query."""
    stop = time.monotonic() + seconds
    latency: dict[str, list[float]] = {"typename": [], "stored": []}
    counts = {"live": 0, "refused": 0, "errors": 0}
    stored = {"query": STORED, "variables": {"id": neuron(3)}}

    async def live(i: int) -> None:
        client = RawClient(port)
        n = 0
        await asyncio.sleep(i * 0.002)  # clients arrive over 2 s, as connections do
        try:
            while time.monotonic() < stop:
                n += 1
                variables = {"p": f"Client {i} asks for the {n}th time about"}
                _, body = await client.post_json("/graphql", {"query": FLOOD_PROMPT, "variables": variables})
                ext = (body.get("errors") or [{}])[0].get("extensions", {})
                if ext.get("code") == "LIMIT_EXCEEDED" and ext.get("retryAfter") is not None:
                    counts["refused"] += 1
                    await asyncio.sleep(float(ext["retryAfter"]))
                elif body.get("errors"):
                    counts["errors"] += 1
                else:
                    counts["live"] += 1
        finally:
            await client.close()

    async def probe() -> None:
        client = RawClient(port)
        await client.post_json("/graphql", stored)  # the stored record is read once before timing
        await asyncio.sleep(3)  # every flood client is connected and looping
        try:
            while time.monotonic() < stop:
                for kind, payload in (("typename", {"query": "{ __typename }"}), ("stored", stored)):
                    start = time.perf_counter()
                    _, body = await client.post_json("/graphql", payload)
                    latency[kind].append(time.perf_counter() - start)
                    if body.get("errors"):
                        counts["errors"] += 1
                await asyncio.sleep(0.05)
        finally:
            await client.close()

    await asyncio.gather(probe(), *(live(i) for i in range(clients)))
    return latency, counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--warmup_seconds",
        type=float,
        default=10.0,
        help="all clients run this long before the memory baseline: batch sizes, caches and allocator "
        "pools reach their working size, so what grows after is growth, not first use",
    )
    parser.add_argument("--model_name", default="tiny-gpt2")
    parser.add_argument("--run_model", default="True")
    parser.add_argument("--data_root", default=None, help="default: a tiny dataset uploaded to a fresh Azurite")
    parser.add_argument("--flood_clients", type=int, default=1000, help="live-prompt clients of the flood; 0: none")
    parser.add_argument("--flood_seconds", type=float, default=20.0)
    args = parser.parse_args()

    azurite = AzuriteProcess() if args.data_root is None else None
    env = {"OPENAI_API_KEY": ""}
    root = args.data_root
    if azurite is not None:
        conn = azurite.start()
        upload(conn, "load")
        env["AZURE_STORAGE_CONNECTION_STRING"] = conn
        root = data_root(conn, "load")
    flags = ["--model_name", args.model_name, "--run_model", args.run_model, "--data_root", str(root)]
    flags += ["--neuron_method", "top-tokens", "--attention_head_method", "top-tokens"]
    try:
        with ServerProcess(flags, env=env) as server:
            assert server.proc is not None
            info = server.query("{ modelInfo { running } }")
            live = bool(info.get("data", {}).get("modelInfo", {}).get("running"))
            print(f"server pid {server.proc.pid}; model running: {live}; {args.clients} clients x {args.seconds:g} s")
            cold = rss_mb(server.proc.pid)
            warm = Load(server.url, server.ws_url, live)
            asyncio.run(warm.run(args.clients, args.warmup_seconds))
            before = rss_mb(server.proc.pid)
            load = Load(server.url, server.ws_url, live)
            elapsed, samples = asyncio.run(load.run(args.clients, args.seconds, server.proc.pid))
            after = rss_mb(server.proc.pid)
            alive = server.proc.poll() is None and httpx.get(f"{server.url}/health").status_code == 200
            flooded = None
            if live and args.flood_clients > 0:
                flooded = asyncio.run(flood(server.port, args.flood_clients, args.flood_seconds))
                alive = alive and server.proc.poll() is None
    finally:
        if azurite is not None:
            azurite.stop()

    served = sum(len(v) for v in load.latency.values())
    errors = sum(load.errors.values()) + (0 if alive else 1)
    print(
        f"served {served} operations in {elapsed:.1f} s ({served / elapsed:.0f}/s); errors {errors}; healthy after: {alive}"
    )
    for kind in sorted(set(load.kinds)):
        lat = load.latency[kind]
        p50 = percentile(lat, 0.5) * 1e3
        p99 = percentile(lat, 0.99) * 1e3
        mean = statistics.fmean(lat) * 1e3 if lat else float("nan")
        print(
            f"  {kind:13s} served {len(lat):6d}  errors {load.errors[kind]:3d}  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  mean {mean:7.1f} ms"
        )
    for example in load.examples:
        print(f"  error: {example}")
    growth = after - before
    print(f"server RSS at start {cold:.0f} MB, after warm-up {before:.0f} MB, at the end {after:.0f} MB")
    print("server RSS every 5 s (MB): " + " ".join(f"{m:.0f}" for m in samples))
    ok_errors = report("load_errors", errors, "<=", 0, digits=0)
    ok_memory = report("load_memory_growth_mb", growth, "<=", 200, digits=1)
    ok_flood = True
    if flooded is not None:
        latency, counts = flooded
        print(
            f"flood: {args.flood_clients} live-prompt clients x {args.flood_seconds:g} s: {counts['live']} served, "
            f"{counts['refused']} refused with a retry hint, {counts['errors']} errors"
        )
        for kind in ("typename", "stored"):
            lat = latency[kind]
            p99 = percentile(lat, 0.99) * 1e3
            print(f"  {kind:9s} {len(lat):4d} timed  p50 {percentile(lat, 0.5) * 1e3:6.1f} ms  p99 {p99:6.1f} ms")
            # a flood that errs fails its lines whatever the latency: fast errors are not the target
            ok = passes(p99, "<=", 250) and counts["errors"] == 0
            ok_flood &= ok
            print(f"bench load_flood_{kind}_p99_ms: {p99:.1f} (target <= 250) {'PASS' if ok else 'FAIL'}")
    return 0 if ok_errors and ok_memory and ok_flood else 1


if __name__ == "__main__":
    raise SystemExit(main())
