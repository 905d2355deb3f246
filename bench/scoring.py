"""Scoring throughput: 40 sequences against the fake OpenAI server with a fixed latency per call.

Prints wall time / (ceil(40 / concurrency) x latency) for the concurrent path (target <= 1.2) and
the speed-up over simulating one sequence at a time, both measured in this run. Uses the real
openai SDK over loopback HTTP, the logprob-free simulator and the scoring core.

    .venv/bin/python bench/scoring.py [--sequences 40] [--concurrency 8] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neuron_explainer.activations.records import ActivationRecord  # noqa: E402
from neuron_explainer.explanations.llm import LlmClient, LlmSettings  # noqa: E402
from neuron_explainer.explanations.scoring import simulate_and_score  # noqa: E402
from neuron_explainer.explanations.simulators import LogprobFreeSimulator  # noqa: E402

WORDS = [" the", " cat", " sat", " on", " a", " mat", " dog", " ran", "."]


def records(n: int, length: int = 64) -> list[ActivationRecord]:
    out = []
    for i in range(n):
        tokens = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(length)]
        out.append(ActivationRecord(tokens=tokens, activations=[8.0 if t == " cat" else 0.1 for t in tokens]))
    return out


async def timed(llm: LlmClient, recs: list[ActivationRecord], concurrency: int) -> tuple[float, float | None]:
    start = time.perf_counter()
    scored = await simulate_and_score(LogprobFreeSimulator(llm), "cat", recs, concurrency=concurrency)
    return time.perf_counter() - start, scored.ev_correlation_score


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sequences", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2)
    args = parser.parse_args()
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
    try:
        assert server.stdout is not None
        url = (await asyncio.wait_for(server.stdout.readline(), 30)).decode().strip()
        llm = LlmClient(LlmSettings(api_key="bench", base_url=url, max_concurrency=args.concurrency))
        try:
            await timed(llm, recs[: args.concurrency], args.concurrency)  # open the pool's connections
            concurrent, score = await timed(llm, recs, args.concurrency)
            serial, _ = await timed(llm, recs, 1)
        finally:
            await llm.close()
    finally:
        server.terminate()
        await server.wait()
    ideal = math.ceil(args.sequences / args.concurrency) * args.latency
    print(
        f"{args.sequences} sequences, concurrency {args.concurrency}, "
        f"latency {args.latency * 1000:.0f} ms/call, "
        f"score {score:.3f}"
    )
    print(
        f"concurrent: {concurrent:.3f} s; ideal {ideal:.3f} s; ratio {concurrent / ideal:.3f} (target <= 1.2)"
    )
    print(f"one at a time: {serial:.3f} s; speed-up {serial / concurrent:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
