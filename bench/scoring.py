"""Scoring throughput and explanation search, each against a baseline measured in the same run.

1. Simulation: 40 sequences against the fake OpenAI server (its own process) with a fixed latency per call,
   concurrency 8: wall time / (ceil(calls / 8) x latency) (target <= 1.2); also the speed-up over one call
   at a time. The LLM benches report the best of ``--rounds`` runs: one 200 ms round is easily doubled by a
   neighbour on a shared 2-core box.
2. detection and fuzzing over 40 examples (20 activating, 20 not; 5 per call unless --examples_per_call),
   same server and concurrency: wall time / (ceil(calls / 8) x latency) (target <= 1.2 each).
3. embedding scoring of 1,000 nodes (10 examples each, all at once, as many jobs would) against embedding
   the same texts alone in one encode call on the same thread (target <= 1.3).
4. searchExplanations' core at 100k stored explanations (synthetic unit vectors written to a folder
   store through the index's own writer; queries embedded by the real model): p50 of a search against p50
   of embedding the query alone (target <= 2), and the p50 itself.

    .venv/bin/python bench/scoring.py [--sequences 40] [--concurrency 8] [--latency 0.2] [--nodes 1000]
                                      [--index_size 100000] [--skip_embedding]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lines import line  # noqa: E402
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord  # noqa: E402
from neuron_explainer.explanations.classifiers import EmbeddingScorer, LlmClassifierScorer  # noqa: E402
from neuron_explainer.explanations.embeddings import DIM, SentenceEmbedder  # noqa: E402
from neuron_explainer.explanations.llm import LlmClient, LlmSettings  # noqa: E402
from neuron_explainer.explanations.scoring import simulate_and_score  # noqa: E402
from neuron_explainer.explanations.search_index import ExplanationIndex, IndexEntry  # noqa: E402
from neuron_explainer.explanations.simulators import LogprobFreeSimulator  # noqa: E402
from neuron_explainer.storage.local import LocalStore  # noqa: E402

WORDS = [" the", " cat", " sat", " on", " a", " mat", " dog", " ran", "."]
TOPICS = [" money", " rain", " music", " code", " food", " sport", " travel", " law"]


def records(n: int, length: int = 64) -> list[ActivationRecord]:
    out = []
    for i in range(n):
        tokens = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(length)]
        out.append(ActivationRecord(tokens=tokens, activations=[8.0 if t == " cat" else 0.1 for t in tokens]))
    return out


def classifier_node(n_each: int, length: int = 64, seed: int = 0) -> NeuronRecord:
    """``4 * n_each`` top records (the valid split has ``n_each``) with " cat", ``n_each`` random without."""
    top = [
        ActivationRecord([" cat" if j % 9 == 4 else WORDS[(i + j) % 8 + 1] for j in range(length)], [])
        for i in range(4 * n_each)
    ]
    top = [ActivationRecord(r.tokens, [8.0 if t == " cat" else 0.0 for t in r.tokens]) for r in top]
    rand = [
        ActivationRecord([TOPICS[(seed + i + j) % len(TOPICS)] for j in range(length)], [0.0] * length)
        for i in range(n_each)
    ]
    return NeuronRecord(layer=0, index=seed, most_positive_activation_records=top, random_sample=rand)


async def timed(llm: LlmClient, recs: list[ActivationRecord], concurrency: int) -> tuple[float, float | None]:
    start = time.perf_counter()
    scored = await simulate_and_score(LogprobFreeSimulator(llm), "cat", recs, concurrency=concurrency)
    return time.perf_counter() - start, scored.ev_correlation_score


async def classifier_ratio(llm: LlmClient, method: str, args: argparse.Namespace) -> tuple[float, float, int]:
    half = args.sequences // 2
    scorer = LlmClassifierScorer(
        llm,
        method,
        examples_per_call=args.examples_per_call,
        concurrency=args.concurrency,
        n_activating=half,
        n_non_activating=half,
    )
    node = classifier_node(half)
    n_examples = scorer.planned_sequences(node, None)
    calls = math.ceil(n_examples / args.examples_per_call)
    await scorer.score("the word cat", node, max_sequences=None, on_sequence=None)  # warm the connections
    walls = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        outcome = await scorer.score("the word cat", node, max_sequences=None, on_sequence=None)
        walls.append(time.perf_counter() - start)
    wall = min(walls)
    ideal = math.ceil(calls / args.concurrency) * args.latency
    print(
        f"{method}: {n_examples} examples, {calls} calls of {args.examples_per_call}, score {outcome.score:.3f}; "
        f"{wall:.3f} s against an ideal {ideal:.3f} s"
    )
    return wall / ideal, wall, calls


async def llm_benches(args: argparse.Namespace) -> list[str]:
    recs = records(args.sequences)
    # The server runs in its own process, as a real endpoint would: sharing our event loop would
    # charge its request handling to the client.
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "fake_openai.py"),
        "--latency",
        str(args.latency),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out = []
    try:
        assert server.stdout is not None
        url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        llm = LlmClient(LlmSettings(api_key="bench", base_url=url, max_concurrency=args.concurrency))
        try:
            await timed(llm, recs[: args.concurrency], args.concurrency)  # open the pool's connections
            concurrent, score = min([await timed(llm, recs, args.concurrency) for _ in range(args.rounds)])
            serial, _ = await timed(llm, recs, 1)
            ideal = math.ceil(args.sequences / args.concurrency) * args.latency
            print(
                f"simulation: {args.sequences} sequences, concurrency {args.concurrency}, "
                f"latency {args.latency * 1000:.0f} ms/call, score {score:.3f}; {concurrent:.3f} s against an "
                f"ideal {ideal:.3f} s; one at a time {serial:.3f} s, speed-up {serial / concurrent:.2f}x"
            )
            out.append(line("simulation_vs_ideal", concurrent / ideal, "<=", 1.2))
            for method in ("detection", "fuzzing"):
                ratio, _, _ = await classifier_ratio(llm, method, args)
                out.append(line(f"{method}_vs_ideal", ratio, "<=", 1.2))
        finally:
            await llm.close()
    finally:
        server.terminate()
        await server.wait()
    return out


async def embedding_bench(embedder: SentenceEmbedder, n_nodes: int) -> str:
    nodes = [classifier_node(5, length=16, seed=i) for i in range(n_nodes)]
    scorer = EmbeddingScorer(embedder)
    explanation = "the word cat"
    texts = [explanation]
    for node in nodes:
        texts += ["".join(e.record.tokens) for e in scorer.examples(node, None)]
        texts.append(explanation)
    texts.pop()
    loop = asyncio.get_running_loop()
    await embedder.embed(texts[:64])  # the model loaded and warm
    start = time.perf_counter()
    await loop.run_in_executor(embedder._executor, embedder._encode, texts)
    alone = time.perf_counter() - start
    start = time.perf_counter()
    scores = await asyncio.gather(
        *(scorer.score(explanation, node, max_sequences=None, on_sequence=None) for node in nodes)
    )
    scoring = time.perf_counter() - start
    mean = statistics.fmean(s.score for s in scores if s.score is not None)
    print(
        f"embedding: {n_nodes} nodes x {len(texts) // n_nodes} texts, mean AUC {mean:.3f}; scoring {scoring:.2f} s "
        f"against encoding the same {len(texts)} texts alone {alone:.2f} s"
    )
    return line("embedding_scoring_vs_encode", scoring / alone, "<=", 1.3)


async def search_bench(embedder: SentenceEmbedder, size: int) -> list[str]:
    rng = np.random.default_rng(0)
    queries = [f"tokens about{t} and{u}" for t in TOPICS for u in TOPICS][:40]
    with tempfile.TemporaryDirectory() as folder:
        store = LocalStore(folder)
        writer = ExplanationIndex(store, embedder, refresh_s=1.0)
        start = time.perf_counter()
        chunk = 10_000
        for base in range(0, size, chunk):
            n = min(chunk, size - base)
            vectors = rng.normal(size=(n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            entries = [
                IndexEntry(f"gpt2-small/ae-resid-delta-mlp-v4/{(base + i) % 12}/{base + i}", f"explanation {base + i}",
                           "baseline", 0.5, "bench")
                for i in range(n)
            ]  # fmt: skip
            await writer.add_vectors(entries, vectors)
        built = time.perf_counter() - start
        reader = ExplanationIndex(store, embedder, refresh_s=1.0)
        start = time.perf_counter()
        await reader.refresh(force=True)
        loaded = time.perf_counter() - start
        await reader.search(queries[0], 10)
        embed_times, search_times, filtered = [], [], []
        for q in queries:
            start = time.perf_counter()
            await embedder.embed([q])
            embed_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            hits = await reader.search(q, 10)
            search_times.append(time.perf_counter() - start)
            assert len(hits) == 10
            start = time.perf_counter()
            await reader.search(q, 10, layer=5)
            filtered.append(time.perf_counter() - start)
    p50_search, p50_embed = statistics.median(search_times), statistics.median(embed_times)
    print(
        f"search at {len(reader):,} explanations: p50 {p50_search * 1000:.1f} ms (p90 "
        f"{statistics.quantiles(search_times, n=10)[-1] * 1000:.1f} ms), with a layer filter p50 "
        f"{statistics.median(filtered) * 1000:.1f} ms; embedding the query alone p50 {p50_embed * 1000:.1f} ms; "
        f"index written in {built:.1f} s, loaded cold by another index in {loaded:.1f} s"
    )
    return [line("search_100k_vs_query_embedding", p50_search / p50_embed, "<=", 2.0)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--examples_per_call", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="LLM benches: best of this many runs (a shared box)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--index_size", type=int, default=100_000)
    parser.add_argument("--skip_embedding", action="store_true", help="only the LLM benches")
    args = parser.parse_args()
    lines = await llm_benches(args)
    if not args.skip_embedding:
        embedder = SentenceEmbedder()
        try:
            lines.append(await embedding_bench(embedder, args.nodes))
            lines += await search_bench(embedder, args.index_size)
        finally:
            await embedder.close()
    print("\n".join(lines))


if __name__ == "__main__":
    asyncio.run(main())
