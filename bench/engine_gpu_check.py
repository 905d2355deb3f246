"""GPU checks of the inference core, run on a lent GPU machine (not part of CI):
live values on CUDA equal CPU ones, autoencoder insertion keeps logits, a real CUDA OOM is split and
retried, memory snapshots dump, and the core engine timings on CUDA.

    python -m bench.engine_gpu_check <out folder>
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import torch

from bench.engine_core import _bench, _gpt2_small_shaped
from neuron_explainer.errors import LimitExceeded
from neuron_explainer.inference import live
from neuron_explainer.inference.engine import InferenceEngine
from neuron_explainer.inference.forward import run_batch
from neuron_explainer.inference.memory_debug import dump_memory_snapshot, start_memory_recording
from neuron_explainer.inference.requests import ForwardRequest, Target
from neuron_explainer.models import hook_names
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.nodes import NodeId, NodeKind

M = "tiny-gpt2"


def parity() -> None:
    aes = {"mlp_autoencoder": "ae-tiny-mlp", "attn_autoencoder": "ae-tiny-attn"}
    cpu, gpu = load_model(M, device="cpu", **aes), load_model(M, device="cuda", **aes)
    tokens = live.tokenize_prompt(cpu, "The quick brown fox jumps over the lazy dog because it was")
    nodes = [
        NodeId(M, NodeKind.MLP_NEURON, 1, 37),
        NodeId(M, NodeKind.ATTENTION_HEAD, 1, 3),
        NodeId(M, NodeKind.MLP_AUTOENCODER_LATENT, 0, 11, "ae-tiny-mlp"),
        NodeId(M, NodeKind.ATTENTION_AUTOENCODER_LATENT, 1, 20, "ae-tiny-attn"),
    ]
    ablation = live.make_ablation(cpu, nodes[0], [2, 3], 1.5, len(tokens))
    loss = live.loss_config(cpu, [" the"], [" a"])
    c, g = live.hooks_for_top_nodes(cpu, NodeKind.MLP_NEURON, live.RankBy.ACT_TIMES_GRAD)
    request = live.request_for(
        tokens, nodes=nodes, extra_captures=c, grad_captures=g, target=Target(loss), ablations=[ablation]
    )
    a, b = run_batch(cpu, [request])[0], run_batch(gpu, [request])[0]
    worst = max(float((a.activations[h] - b.activations[h]).abs().max()) for h in a.activations)
    worst_grad = max(float((a.grads[h] - b.grads[h]).abs().max()) for h in a.grads)
    print(
        f"parity cpu-vs-cuda: max |activation diff| {worst:.2e}, max |grad diff| {worst_grad:.2e}, "
        f"loss {a.loss:.6f} vs {b.loss:.6f}, logits {float((a.last_logits - b.last_logits).abs().max()):.2e}"
    )
    latents = frozenset(hook_names.ae_latents(k, layer) for k in (nodes[2].kind, nodes[3].kind) for layer in range(2))
    inserted, plain = run_batch(
        gpu, [ForwardRequest(tokens, latents, lm_loss=True), ForwardRequest(tokens, lm_loss=True)]
    )
    diff = float((inserted.last_logits - plain.last_logits).abs().max())
    print(f"cuda AE insertion: max |logit diff| {diff:.2e}")
    assert worst < 1e-4 and worst_grad < 1e-4


async def real_oom(folder: str) -> None:
    model = load_model(folder, device="cuda")
    sizes: list[int] = []
    engine = InferenceEngine(model, max_batch_size=16, max_wait_ms=5, before_batch=lambda r: sizes.append(len(r)))
    captures, grads = live.hooks_for_top_nodes(model, NodeKind.ATTENTION_HEAD, live.RankBy.ACT_TIMES_GRAD)
    loss = live.loss_config(model, [" the"])
    requests = [
        ForwardRequest(tuple((i * 7 + j) % 50000 for j in range(1024)), captures, grads, target=Target(loss))
        for i in range(16)
    ]
    await engine.run(requests[0])  # warm-up, unconstrained
    one = torch.cuda.max_memory_allocated()
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(int(free - 3 * one), dtype=torch.uint8, device="cuda")  # leave room for ~2 requests
    engine.forward_count = 0
    outcomes = await asyncio.gather(*(engine.run(r) for r in requests), return_exceptions=True)
    ok = sum(not isinstance(o, BaseException) for o in outcomes)
    limited = sum(isinstance(o, LimitExceeded) for o in outcomes)
    other = [repr(o) for o in outcomes if isinstance(o, BaseException) and not isinstance(o, LimitExceeded)]
    print(
        f"real OOM: one request peaks at {one / 2**30:.2f} GiB; batch sizes tried {sizes[1:]}; "
        f"{ok} ok, {limited} LimitExceeded, other errors {other}; oom_count {engine.oom_count}"
    )
    del hog
    torch.cuda.empty_cache()
    after = await engine.run(requests[1])
    print(f"engine alive after OOM: {after.loss is not None}")
    await engine.close()


def main() -> None:
    out = Path(sys.argv[1])
    print(torch.__version__, torch.cuda.get_device_name())
    assert start_memory_recording()
    parity()
    snapshot = dump_memory_snapshot(out)
    print(f"memory snapshot: {snapshot} ({snapshot.stat().st_size if snapshot else 0} bytes)")
    torch.cuda.memory._record_memory_history(enabled=None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _gpt2_small_shaped(Path(tmp))
        asyncio.run(real_oom(folder))
        for name in (M, folder):
            model = load_model(name, device="cuda")
            numbers = asyncio.run(_bench(model, 30))
            print(f"bench {model.name} cuda: " + " ".join(f"{k}={v:.3f}" for k, v in numbers.items()))
            del model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
