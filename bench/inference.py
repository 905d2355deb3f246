"""Live-inference benchmark over HTTP, on real servers (uvicorn subprocesses).

1. ``live/<model>``: one live query — one neuron's activations on a 64-token prompt — end to end over
   HTTP (a kept-alive connection), against a bare forward of the same model on the same tokens in
   this process (``bridge(tokens)``, no hooks, same device), measured interleaved. Target ratio <= 1.3,
   for ``tiny-gpt2`` and a GPT-2-small-shaped model with random weights (a local checkpoint folder).
   Also printed, without a target: the ratio against a stricter baseline that unembeds only the last
   position (the live path never needs more).
2. ``coalescing/tiny-gpt2``: 16 concurrent clients (minimal keep-alive HTTP/1.1 clients, so the
   client side does not cap the rate), each with its own prompts (8 to 40 tokens, never repeated),
   against the same server with batching on (default) and off (``--max_batch_size 1``): throughput
   ratio >= 3.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/inference.py [--models tiny-gpt2,gpt2-small-shaped] [--quick]

Servers and this process pick the same device (CUDA when available) and the same number of torch
threads (the server's default: one fewer than the cores). Each ratio is measured in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx  # noqa: E402
import torch  # noqa: E402

from bench.lines import TEXT, report  # noqa: E402
from neuron_explainer.activation_server.model_service import engine_threads  # noqa: E402
from neuron_explainer.models.home import atomic_dir, neuron_explainer_home  # noqa: E402
from neuron_explainer.models.loaded_model import LoadedModel  # noqa: E402
from neuron_explainer.models.model_registry import load_model  # noqa: E402
from neuron_explainer.models.tokenizer import gpt2_tokenizer  # noqa: E402
from neuron_explainer.settings import ServerSettings  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

QUERY = 'query($p: String!) { node(id: "%s/mlp_neuron/%d/7") { activations(prompt: $p) { activations } } }'


def gpt2_small_shaped() -> str:
    """GPT-2 small's architecture with fixed-seed random weights, saved once as a local checkpoint folder."""

    def build(folder: Path) -> None:
        from transformers import GPT2Config, GPT2LMHeadModel

        generator_state = torch.random.get_rng_state()
        torch.manual_seed(0)
        config = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, n_ctx=1024)  # type: ignore[call-arg]
        GPT2LMHeadModel(config).save_pretrained(str(folder))
        gpt2_tokenizer().save_pretrained(str(folder))
        torch.random.set_rng_state(generator_state)

    return str(atomic_dir(neuron_explainer_home() / "bench" / "gpt2-small-shaped", build))


def prompt_of(model: LoadedModel, n_tokens: int, offset: int = 0) -> str:
    """A text that tokenizes to exactly ``n_tokens`` tokens."""
    ids = model.to_tokens(TEXT * 4)[offset:]
    for cut in range(n_tokens, n_tokens + 8):
        text = model.tokenizer.decode(ids[:cut])
        if len(model.to_tokens(text)) == n_tokens:
            return str(text)
    raise RuntimeError(f"no prefix of the text tokenizes to {n_tokens} tokens")


def _sync(model: LoadedModel) -> None:
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], model: LoadedModel) -> float:
    start = time.perf_counter()
    fn()
    _sync(model)
    return time.perf_counter() - start


def bench_live(name: str, model_arg: str, data_root: str, repeats: int) -> bool:
    model = load_model(model_arg)
    text = prompt_of(model, 64)
    tokens = torch.tensor([model.to_tokens(text)], device=model.device)  # [1, 64]
    last = torch.tensor([63], device=model.device)
    layer = model.shape.n_layers // 2
    with (
        ServerProcess(["--model_name", model_arg, "--data_root", data_root]) as server,
        httpx.Client(timeout=120) as client,
    ):
        body = {"query": QUERY % (model.name, layer), "variables": {"p": text}}

        def http() -> None:
            response = client.post(f"{server.url}/graphql", json=body)
            values = response.json()["data"]["node"]["activations"]["activations"]
            assert len(values) == 64, response.text

        def bare() -> None:
            with torch.inference_mode():
                model.bridge(tokens)

        def bare_last() -> None:
            with torch.inference_mode():
                model.bridge(tokens, logits_to_keep=last)

        for fn in (http, bare, bare_last, http, bare, bare_last):  # warm-up
            fn()
        times: dict[str, list[float]] = {"http": [], "bare": [], "bare_last": []}
        fns = {"http": http, "bare": bare, "bare_last": bare_last}
        block = 5
        for _ in range(max(1, repeats // block)):  # alternating blocks: drifting machine load hits all alike
            for key, fn in fns.items():
                times[key] += [_timed(fn, model) for _ in range(block)]
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    print(
        f"  {name} on {model.device}: live query over HTTP {med['http']:.2f} ms, bare forward {med['bare']:.2f} ms, "
        f"bare forward unembedding the last position only {med['bare_last']:.2f} ms (medians of {repeats})",
        flush=True,
    )
    print(f"  {name}: ratio to the last-position-only forward {med['http'] / med['bare_last']:.3f} (info)")
    return report(f"live/{name} http/bare", med["http"] / med["bare"], "<=", 1.3)


async def _client(port: int, prompts: list[str]) -> None:
    """One keep-alive connection sending its prompts one after another (a minimal HTTP/1.1 client)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for text in prompts:
            body = json.dumps({"query": QUERY % ("tiny-gpt2", 1), "variables": {"p": text}}).encode()
            head = f"POST /graphql HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            writer.write(head.encode() + b"\r\n\r\n" + body)
            await writer.drain()
            headers = (await reader.readuntil(b"\r\n\r\n")).decode().lower().split("\r\n")
            length = int(next(h for h in headers if h.startswith("content-length:")).split(":")[1])
            answer = json.loads(await reader.readexactly(length))
            assert answer["data"]["node"]["activations"] is not None, answer
    finally:
        writer.close()


async def _clients(port: int, prompts: list[list[str]]) -> float:
    """All clients at once; requests per second."""
    start = time.perf_counter()
    await asyncio.gather(*(_client(port, mine) for mine in prompts))
    return sum(len(m) for m in prompts) / (time.perf_counter() - start)


def _settled(server: ServerProcess, idle_share: float = 0.05, timeout_s: float = 90) -> None:
    """Until the server process is idle: after ``ready`` it still loads the explanation-search embedder in
    the background, which would take CPU from whichever mode is measured first."""
    assert server.proc is not None
    stat, ticks = Path(f"/proc/{server.proc.pid}/stat"), os.sysconf("SC_CLK_TCK")

    def cpu_s() -> float:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = cpu_s()
        time.sleep(1.0)
        if cpu_s() - before < idle_share:
            return


def _forwards(server: ServerProcess) -> int:
    body = httpx.post(f"{server.url}/graphql", json={"query": "{ engineStats { forwardCount } }"}).json()
    return int(body["data"]["engineStats"]["forwardCount"])


def bench_coalescing(data_root: str, rounds: int, n_clients: int = 16) -> bool:
    model = load_model("tiny-gpt2")
    prompts = [
        [f"Client {c}, request {r}: " + prompt_of(model, 1 + (c * 7 + r * 3) % 32, offset=c + r) for r in range(rounds)]
        for c in range(n_clients)
    ]
    assert len({p for mine in prompts for p in mine}) == n_clients * rounds, "prompts must all differ"
    rates: dict[str, float] = {}
    for label, flags in (("batched", []), ("batch size 1", ["--max_batch_size", "1"])):
        with ServerProcess(["--model_name", "tiny-gpt2", "--data_root", data_root, *flags]) as server:
            _settled(server)
            asyncio.run(_clients(server.port, [mine[:2] for mine in prompts]))  # warm-up
            before = _forwards(server)
            rates[label] = asyncio.run(_clients(server.port, prompts))
            forwards = _forwards(server) - before
        print(
            f"  tiny-gpt2, {n_clients} clients x {rounds} requests, {label}: {rates[label]:.1f} requests/s "
            f"({forwards} forwards)",
            flush=True,
        )
    return report(
        "coalescing/tiny-gpt2 batched/unbatched throughput", rates["batched"] / rates["batch size 1"], ">=", 3
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny-gpt2,gpt2-small-shaped")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--skip_coalescing", action="store_true")
    args = parser.parse_args()
    threads = engine_threads(ServerSettings())
    torch.set_num_threads(threads)  # the baseline gets what the server's engine gets
    print(f"  {os.cpu_count()} cores, {threads} torch threads, CUDA {'on' if torch.cuda.is_available() else 'off'}")
    ok = True
    with tempfile.TemporaryDirectory() as data_root:  # an empty data root: no dataset, no network
        for name in args.models.split(","):
            model_arg = gpt2_small_shaped() if name == "gpt2-small-shaped" else name
            repeats = 10 if args.quick else (60 if name == "tiny-gpt2" else 25)
            ok &= bench_live(name, model_arg, data_root, repeats)
        if not args.skip_coalescing:
            ok &= bench_coalescing(data_root, rounds=4 if args.quick else 12)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
