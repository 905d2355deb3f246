"""Core-level timings of the inference engine (no HTTP): overhead of one live query over a bare
forward, and throughput of 16 concurrent prompts with coalescing vs batch size 1.

    HF_HUB_OFFLINE=1 python -m bench.engine_core [--model tiny-gpt2|gpt2-small-shaped] [--device cpu|cuda]

``gpt2-small-shaped`` is GPT-2 small's architecture with random weights (no download), written to a
temp folder and loaded through the registry like any local checkpoint. Every ratio is measured in one
run, on one device, against a baseline taken in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bench.lines import TEXT
from neuron_explainer.inference import live
from neuron_explainer.inference.engine import InferenceEngine
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.models.tokenizer import gpt2_tokenizer
from neuron_explainer.nodes import NodeId, NodeKind


def _gpt2_small_shaped(folder: Path) -> str:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, n_ctx=1024)  # type: ignore[call-arg]
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    gpt2_tokenizer().save_pretrained(str(folder))
    return str(folder)


def _sync(model: LoadedModel) -> None:
    if model.device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], object], model: LoadedModel, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(model)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def _bench(model: LoadedModel, repeats: int) -> dict[str, float]:
    tokens = live.tokenize_prompt(model, TEXT)[:64]
    batch = torch.tensor([list(tokens)], device=model.device)
    node = NodeId(model.name, NodeKind.MLP_NEURON, model.shape.n_layers // 2, 131)

    def bare() -> object:
        with torch.inference_mode():
            return model.bridge(batch)

    engine = InferenceEngine(model, max_batch_size=16)

    async def one_query() -> list[float]:
        result = await engine.run(live.request_for(tokens, nodes=[node]))
        return live.node_activations(model, result, node)

    for _ in range(3):
        bare()
        await one_query()
    bare_times, query_times = [], []
    for _ in range(repeats):  # interleaved, so load from other processes hits both alike
        bare_times.append(_median_ms(bare, model, 1))
        start = time.perf_counter()
        await one_query()
        query_times.append((time.perf_counter() - start) * 1000)
    bare_ms, query_ms = statistics.median(bare_times), statistics.median(query_times)
    await engine.close()

    prompts = [live.tokenize_prompt(model, f"Client {i} asks: " + TEXT)[:64] for i in range(16)]
    requests = [live.request_for(p, nodes=[node]) for p in prompts]
    engines = {16: InferenceEngine(model, 16), 1: InferenceEngine(model, 1)}
    elapsed = {16: 0.0, 1: 0.0}
    for round_ in range(4):
        for size, eng in engines.items():
            start = time.perf_counter()
            await asyncio.gather(*(eng.run(r) for r in requests))
            if round_:  # round 0 warms up
                elapsed[size] += time.perf_counter() - start
    for eng in engines.values():
        await eng.close()
    batched, single = (3 * len(requests) / elapsed[size] for size in (16, 1))
    return {
        "bare_forward_ms": bare_ms,
        "engine_query_ms": query_ms,
        "overhead_ratio": query_ms / bare_ms,
        "req_per_s_batched": batched,
        "req_per_s_batch1": single,
        "coalescing_speedup": batched / single,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-gpt2")
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        name = _gpt2_small_shaped(Path(tmp)) if args.model == "gpt2-small-shaped" else args.model
        model = load_model(name, device=args.device)
        numbers = asyncio.run(_bench(model, args.repeats))
    print(f"model={args.model} device={model.device} " + " ".join(f"{k}={v:.3f}" for k, v in numbers.items()))


if __name__ == "__main__":
    main()
