"""``--inference_backend ray`` on a real two-node Ray cluster (``tests/ray_cluster.py``): the embedded default
served through Ray Serve replicas on the second node answers the README's queries exactly as the local
backend does, keeps one forward per prompt per query, survives a replica killed under load, and an
unreachable ``--ray_address`` stops the server at start naming it.

The Ray server is the real command line in its own process (a driver of its own); the local one runs in
this process. Both are the embedded default (``scripts/dev.sh serve``'s flags), each with its own store,
so each builds the demo dataset: the Ray one through ``call(fn)`` on its replicas.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from neuron_explainer.activation_server.cli_args import parse_settings
from neuron_explainer.activation_server.model_service import ray_options
from neuron_explainer.errors import UpstreamUnavailable
from neuron_explainer.inference.ray_backend import _deploy, _probe
from tests.ray_cluster import WORKER_RESOURCE, RayCluster
from tests.server import InProcessServer, ServerProcess, error_codes, free_port

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = [  # scripts/dev.sh serve
    "--model_name", "tiny-gpt2", "--mlp_autoencoder_name", "ae-tiny-mlp", "--attn_autoencoder_name", "ae-tiny-attn",
    "--neuron_method", "top-tokens", "--attention_head_method", "top-tokens", "--build_demo_dataset", "True",
]  # fmt: skip
PROMPT = "The quick brown fox jumps over the lazy dog because it was"


def ray_flags(address: str) -> list[str]:
    """Two replicas of half a CPU each, on the worker node (its custom resource), one app for every test."""
    return [
        "--inference_backend", "ray", "--ray_address", address, "--ray_replicas", "2",
        "--ray_cpus_per_replica", "0.5", "--ray_replica_resources", json.dumps({WORKER_RESOURCE: 1}),
        "--ray_request_timeout_s", "30",
    ]  # fmt: skip


def readme_queries() -> dict[str, str]:
    """The README's GraphQL blocks this server can answer: the live tiny-gpt2 query as written, and the
    node query and score mutation on a tiny-gpt2 node (the README shows them on gpt2-small)."""
    blocks = re.findall(r"```graphql\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    live = next(b for b in blocks if "tiny-gpt2/mlp_neuron/1/37" in b and "prompt(" in b)
    node = next(b for b in blocks if "topActivations(first: 5)" in b).replace("gpt2-small/mlp_neuron/5/131", N)
    score = next(b for b in blocks if "scoreExplanation(" in b).replace("gpt2-small/mlp_neuron/5/131", N)
    return {"live": live, "node": node, "score": score.split("subscription")[0]}


N = "tiny-gpt2/mlp_neuron/1/37"


def _strip(value: Any, drop: tuple[str, ...] = ("computedAt",)) -> Any:
    """Answers minus what differs by nature between two servers (when a live value was computed)."""
    if isinstance(value, dict):
        return {k: _strip(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_strip(v, drop) for v in value]
    return value


def same(a: Any, b: Any, path: str = "") -> None:
    """Equal answers: every string, int and shape exactly; floats within batching's rounding (the engine's
    docstring: a row batched with others equals its unbatched run within ~1e-6). Two servers batch
    differently: locally the query's passes share a batch, through Ray they may land on two replicas."""
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), path
        assert abs(a - b) <= 1e-6 + 1e-5 * abs(b), (path, a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a, b)
        for k in a:
            same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


def _data(body: dict[str, Any]) -> dict[str, Any]:
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


@pytest.fixture(scope="module")
def servers(ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    base = tmp_path_factory.mktemp("ray-backend")
    local = InProcessServer([*EMBEDDED, "--data_root", str(base / "local")])
    ray = ServerProcess([*EMBEDDED, "--data_root", str(base / "ray"), *ray_flags(ray_cluster.address)])
    try:
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(s.start) for s in (local, ray)]:
                f.result()
        yield {"local": local, "ray": ray}
    finally:
        ray.stop()
        local.stop()


def _forwards(server: ServerProcess) -> int:
    count: int = _data(server.query("{ engineStats { forwardCount } }"))["engineStats"]["forwardCount"]
    return count


def test_embedded_default_through_ray_answers_the_readme_queries(servers: dict[str, ServerProcess]) -> None:
    """Must show 1: the README's queries on the embedded default, through Ray and locally: equal answers."""
    queries = readme_queries()
    for name in ("live", "node"):
        variables = {"p": PROMPT} if "$p" in queries[name] else {}
        answers = {kind: _data(s.query(queries[name], variables)) for kind, s in servers.items()}
        same(_strip(answers["ray"]), _strip(answers["local"]), name)
    live = _data(servers["ray"].query(queries["live"], {"p": PROMPT}))
    assert live["modelInfo"]["running"] and live["neuron"]["activations"]["provenance"]["source"] == "LIVE"
    assert live["prompt"]["topNodes"] and live["prompt"]["activations"]["activations"]
    node = _data(servers["ray"].query(queries["node"]))["node"]
    assert node["topActivations"][0]["provenance"]["source"] == "STORED"  # the demo dataset, built through Ray
    # The score job (no LLM: the embedded default's token-lookup) completes with the same score on both.
    scores = {}
    for kind, server in servers.items():
        job = _data(server.query(queries["score"]))["scoreExplanation"]
        deadline = time.monotonic() + 60
        while True:
            found = _data(
                server.query("query($id: ID!) { job(id: $id) { status result { score } } }", {"id": job["id"]})
            )
            if found["job"]["status"] == "COMPLETED" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found["job"]["status"] == "COMPLETED", found
        scores[kind] = found["job"]["result"]["score"]
    same(scores["ray"], scores["local"])


def test_live_records_through_call_equal_local(servers: dict[str, ServerProcess]) -> None:
    """``source: LIVE`` builds the node's layer over the reference corpus: through Ray ``call(fn)`` sends one
    pure forward per batch to a replica and accumulates here; the records equal the local build's."""
    query = """{ n: node(id: "tiny-gpt2/ae-tiny-attn/0/9") {
        topActivations(first: 4, source: LIVE) { tokens activations provenance { source dataset } }
        stats(source: LIVE) { mean variance skewness kurtosis quantileBoundaries } }
      h: node(id: "tiny-gpt2/attention_head/1/2") { topActivations(first: 2, source: LIVE) { attentionRows } } }"""
    answers = {kind: _strip(_data(s.query(query))) for kind, s in servers.items()}
    same(answers["ray"], answers["local"])
    assert answers["ray"]["n"]["topActivations"][0]["provenance"]["source"] == "LIVE"


def test_one_forward_per_prompt_per_query(servers: dict[str, ServerProcess]) -> None:
    ray = servers["ray"]
    aliases = " ".join(
        f'n{i}: node(id: "tiny-gpt2/mlp_neuron/{i % 2}/{i}") {{ activations(prompt: $p) {{ activations }} }}'
        for i in range(12)
    )
    query = f"""query($p: String!) {{ {aliases}
        h: node(id: "tiny-gpt2/attention_head/1/3") {{ activations(prompt: $p) {{ attentionRows }} }}
        prompt(text: $p) {{ tokens topLogits(k: 3) {{ token }} }} }}"""
    before = _forwards(ray)
    answer = _data(ray.query(query, {"p": PROMPT}))
    assert _forwards(ray) - before == 1
    same(_strip(answer), _strip(_data(servers["local"].query(query, {"p": PROMPT}))))


def test_bad_input_is_typed_through_ray(servers: dict[str, ServerProcess]) -> None:
    body = servers["ray"].query('{ prompt(text: "") { loss } node(id: "tiny-gpt2/mlp_neuron/1/9999") { id } }')
    assert set(error_codes(body)) == {"BAD_USER_INPUT"}, body


def test_unreachable_ray_address_fails_at_start_naming_it(tmp_path: Path) -> None:
    """A refused port fails the probe at once; an address that accepts TCP but is no Ray cluster (this
    sandbox's proxy answers every address), where Ray itself would retry for 20-30 s, fails the real
    command line after 3 x the probe timeout (5 s by default, 1 s here), naming the address."""
    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(UpstreamUnavailable, match=f"cannot reach the Ray cluster at --ray_address {dead}"):
        _probe(dead, 2.0)
    address = "10.255.255.1:6379"
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        ServerProcess(["--model_name", "tiny-gpt2", "--data_root", str(tmp_path), "--inference_backend", "ray",
                       "--ray_address", address, "--ray_connect_timeout_s", "1"], startup_timeout=90).start()  # fmt: skip
    assert time.monotonic() - started < 45  # the process's own imports included
    # Here a proxy accepts the TCP probe, so it is Ray that does not answer; on a plain network the probe
    # itself times out. Either way the message names the address.
    message = str(failed.value)
    assert "(UPSTREAM_UNAVAILABLE)" in message and f"--ray_address {address}" in message, message[-2000:]


def _replica_pids(cluster_args: list[str], replicas: int = 2) -> list[int]:
    """The pids of the app's replicas, asked through this process's own connection to the cluster once
    Serve runs all ``replicas`` (an earlier test may have killed one: Serve is then replacing it)."""
    from ray import serve

    name = ray_options(parse_settings(cluster_args)).app_name()
    deadline = time.monotonic() + 120
    while True:
        app = serve.status().applications.get(name)
        if app is not None and str(app.status).endswith("RUNNING"):
            try:
                pids = sorted(int(c["pid"]) for c in serve.get_app_handle(name).broadcast("counters").results())
                if len(pids) == replicas:
                    return pids
            except Exception:  # a handle that has not yet heard of the death; asked again below
                if time.monotonic() > deadline:
                    raise
        assert time.monotonic() < deadline, f"{name}: not {replicas} running replicas within 120 s ({app})"
        time.sleep(0.5)


def _join_by_name_while_replaced(cluster_args: list[str]) -> None:
    """A server's start-up step by ``--ray_app_name`` (run in this process, so the timing is the test's),
    taken once Serve has seen a replica die and before it has started another (which loads a model)."""
    from ray import serve

    name = ray_options(parse_settings(cluster_args)).app_name()
    deadline = time.monotonic() + 30
    while str(serve.status().applications[name].status).endswith("RUNNING"):
        assert time.monotonic() < deadline, "Serve never noticed the killed replica"
        time.sleep(0.05)
    by_name = ray_options(parse_settings([*cluster_args, "--ray_app_name", name, "--ray_connect_timeout_s", "90"]))
    assert _deploy(by_name) is not None
    assert str(serve.status().applications[name].status).endswith("RUNNING")


def test_replica_killed_under_load_every_request_answered_or_typed(
    servers: dict[str, ServerProcess], ray_cluster: RayCluster
) -> None:
    """SIGKILL one of the two replicas while 32 live queries are in flight: each is answered (the same values
    as the local backend's) or UPSTREAM_UNAVAILABLE, none hangs, and the server goes on serving. A server
    starting meanwhile by ``--ray_app_name`` finds the application ``UNHEALTHY`` (as after a node is lost)
    and waits for Serve to replace the replica instead of refusing to start."""
    ray, local = servers["ray"], servers["local"]
    cluster_args = [*EMBEDDED, *ray_flags(ray_cluster.address)]
    pids = _replica_pids(cluster_args)
    assert len(pids) == 2
    query = 'query($p: String!) { node(id: "tiny-gpt2/mlp_neuron/1/37") { activations(prompt: $p) { activations } } }'
    prompts = [f"{PROMPT} {i} and then some more words number {i}" for i in range(32)]
    expected = {p: _data(local.query(query, {"p": p})) for p in prompts}

    async def ask(client: httpx.AsyncClient, prompt: str) -> dict[str, Any]:
        response = await client.post(f"{ray.url}/graphql", json={"query": query, "variables": {"p": prompt}})
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def load() -> tuple[list[dict[str, Any]], float]:
        async with httpx.AsyncClient(timeout=90) as client:
            tasks = [asyncio.create_task(ask(client, p)) for p in prompts]
            await asyncio.sleep(0.05)
            os.kill(pids[0], signal.SIGKILL)
            rejoined = asyncio.create_task(asyncio.to_thread(_join_by_name_while_replaced, cluster_args))
            bodies = await asyncio.gather(*tasks)
            answered_in = time.monotonic() - started
            await rejoined
            return bodies, answered_in

    started = time.monotonic()
    bodies, answered_in = asyncio.run(load())
    assert answered_in < 60
    answered = 0
    for prompt, body in zip(prompts, bodies, strict=True):
        if body.get("errors"):
            assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
        else:
            same(body["data"], expected[prompt])
            answered += 1
    assert answered >= len(prompts) // 2
    same(_data(ray.query(query, {"p": PROMPT})), _data(local.query(query, {"p": PROMPT})))


def test_a_server_through_ray_client_uses_a_running_application_by_name(
    servers: dict[str, ServerProcess], ray_cluster: RayCluster, tmp_path: Path
) -> None:
    """The KubeRay recipe's server: ``ray://`` (Ray Client on the head) and ``--ray_app_name``, deploying
    nothing: it answers with the module's replicas."""
    name = ray_options(parse_settings([*EMBEDDED, *ray_flags(ray_cluster.address)])).app_name()
    flags = ["--inference_backend", "ray", "--ray_address", f"ray://127.0.0.1:{ray_cluster.client_port}",
             "--ray_app_name", name, "--ray_connect_timeout_s", "90"]  # fmt: skip
    with ServerProcess(["--model_name", "tiny-gpt2", "--data_root", str(tmp_path), *flags]) as client:
        query = readme_queries()["live"]
        # This server's store has no records to scale by, and its forward count has its own history.
        drop = ("computedAt", "normalizedActivations", "engineStats")
        answers = [_strip(_data(s.query(query, {"p": PROMPT})), drop) for s in (client, servers["ray"])]
        same(*answers)
    with pytest.raises(RuntimeError, match="no running Ray Serve application 'nope'"):
        ServerProcess(
            ["--model_name", "tiny-gpt2", "--data_root", str(tmp_path), *flags[:-3], "nope", *flags[-2:]]
        ).start()


def test_the_default_install_and_the_embedded_default_never_import_ray(servers: dict[str, ServerProcess]) -> None:
    """The embedded default starts (model, its demo dataset found on the local server's store, jobs) with no
    Ray import, nor does importing ``collate``."""
    code = f"""
import asyncio, sys
from neuron_explainer.activation_server.cli_args import parse_settings
from neuron_explainer.activation_server.services import close_server, open_server
from neuron_explainer.collation.cli import main as collate
args = {EMBEDDED!r} + ["--data_root", {servers["local"].args[servers["local"].args.index("--data_root") + 1]!r}]
async def run():
    await close_server(await open_server(parse_settings(args)))
asyncio.run(run())
print("RAY" if any(m == "ray" or m.startswith("ray.") for m in sys.modules) else "NO RAY")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "NO RAY"
