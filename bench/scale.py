"""Scaling the Ray backend: the routing and batching layer with 1, 2, 4, 8 replicas, and the real model's
overhead through Ray, each ratio measured in this one run.

1. ``ray_scale/N``: replicas whose forward is a fixed wait holding no CPU (``ReplicaConfig.simulated_forward_s``;
   each replica's ``InferenceEngine`` batches as usual, up to ``--batch`` 4), driven through
   ``RayBackend.run`` by ``2 * batch`` callers per replica for ``--seconds``: throughput with N replicas
   over throughput with one, target >= 0.8 * N. It measures everything but the model: Serve's routing to
   replicas, the engine's coalescing on each, the pickling of requests and results. Those cost CPU per
   request (Ray's and ours: ~8 ms of this shared 2-core box's time per request, so the whole box tops out
   near 230 requests/s), so the wait is 200 ms per batch by default: 8 saturated replicas then need
   160 requests/s. With ``--wait_ms 50`` (80 requests/s per replica) 2 replicas still scale (1.9x) and 4
   and 8 hit that CPU ceiling (2.6x, 3.0x): the limit is the box, not the routing.
2. ``ray_overhead/tiny-gpt2``: the README's one-neuron live query on a 64-token prompt over HTTP, median
   latency of a server with ``--inference_backend ray`` (one replica) over the same server running the
   model locally, measured interleaved. Reported against a loose target (<= 3): on tiny-gpt2 the
   forward is ~4 ms, so this ratio is almost all of Ray's per-request cost (two process hops and
   pickling); on a real model it shrinks towards 1.

Starts its own local Ray cluster (this process is its driver) and stops it at the end.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/scale.py [--replicas 1,2,4,8] [--seconds 6] [--skip_http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import httpx  # noqa: E402

from bench.lines import TEXT, report  # noqa: E402
from neuron_explainer.inference.ray_backend import RayBackend, RayOptions, connect, disconnect  # noqa: E402
from neuron_explainer.inference.ray_replica import ReplicaConfig  # noqa: E402
from neuron_explainer.inference.requests import ForwardRequest  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

QUERY = 'query($p: String!) { node(id: "tiny-gpt2/mlp_neuron/1/37") { activations(prompt: $p) { activations } } }'


async def throughput(replicas: int, batch: int, wait_s: float, seconds: float) -> float:
    """Requests per second through ``replicas`` simulated replicas, saturated."""
    from ray import serve

    config = ReplicaConfig("simulated", max_batch_size=batch, simulated_forward_s=wait_s)
    options = RayOptions(config, address=None, replicas=replicas, cpus_per_replica=0.01)
    backend = await RayBackend.start(options)
    done = 0
    stop = time.monotonic() + seconds + 1.0

    async def caller(i: int) -> None:
        nonlocal done
        n = 0
        while time.monotonic() < stop:
            await backend.run(ForwardRequest(tuple(range(1, 2 + (i + n) % 30)), logits=False))
            n += 1
            if time.monotonic() > stop - seconds:  # the first second warms every replica up
                done += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(2 * batch * replicas)))
    rate = done / (time.monotonic() - started - 1.0)
    await backend.close()
    await asyncio.to_thread(serve.delete, options.app_name())
    print(f"  {replicas} replica(s): {rate:.0f} requests/s, {backend.forward_count} batches", flush=True)
    return rate


def http_overhead(rounds: int) -> float:
    """Median latency through Ray over the local backend's, on the same query, interleaved."""
    common = ["--model_name", "tiny-gpt2", "--run_model", "True", "--data_root", str(ROOT / "var" / "bench-scale")]
    local = ServerProcess(common)
    ray = ServerProcess([*common, "--inference_backend", "ray", "--ray_address", "auto", "--ray_cpus_per_replica", "1"])
    times: dict[str, list[float]] = {"local": [], "ray": []}
    try:
        for server in (local, ray):
            server.start()
        clients = {name: httpx.Client(base_url=s.url, timeout=60) for name, s in (("local", local), ("ray", ray))}
        prompt = TEXT[: 64 * 4]
        for i in range(rounds + 10):
            for name, client in clients.items():
                started = time.perf_counter()
                body = client.post("/graphql", json={"query": QUERY, "variables": {"p": f"{prompt} {i}"}}).json()
                elapsed = time.perf_counter() - started
                assert "errors" not in body, body
                if i >= 10:
                    times[name].append(elapsed)
    finally:
        ray.stop()
        local.stop()
    medians = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(f"  tiny-gpt2 live query over HTTP: local {medians['local']:.2f} ms, Ray {medians['ray']:.2f} ms", flush=True)
    return medians["ray"] / medians["local"]


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", default="1,2,4,8")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--wait_ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--skip_http", action="store_true")
    args = parser.parse_args()
    counts = [int(n) for n in args.replicas.split(",")]
    await asyncio.to_thread(connect, None, 5.0)  # a local cluster, this process its driver
    ok = True
    try:
        import ray

        print(f"Ray {ray.__version__}, local cluster, {os.cpu_count()} cores; forward = {args.wait_ms:g} ms wait")
        rates = {n: await throughput(n, args.batch, args.wait_ms / 1000, args.seconds) for n in counts}
        base = rates[counts[0]] / counts[0]
        for n in counts[1:]:
            ok &= report(f"ray_scale/{n}_replicas", rates[n] / base, ">=", 0.8 * n)
        if not args.skip_http:
            # The servers are drivers of this same cluster (--ray_address auto).
            ok &= report("ray_overhead/tiny-gpt2", await asyncio.to_thread(http_overhead, args.rounds), "<=", 3.0)
    finally:
        await asyncio.to_thread(disconnect)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
