"""Inference core on real tiny-gpt2 forwards: live values against direct transformer-lens runs and
hand computations, autoencoder insertion, ablations, gradients, and the batching engine."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from neuron_explainer.errors import BadInput, LimitExceeded
from neuron_explainer.inference import live
from neuron_explainer.inference.engine import InferenceEngine
from neuron_explainer.inference.forward import run_batch
from neuron_explainer.inference.memory_debug import dump_memory_snapshot, start_memory_recording
from neuron_explainer.inference.requests import ForwardRequest, LossConfig, Target
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.nodes import NodeId, NodeKind

M = "tiny-gpt2"
PROMPT = "The quick brown fox jumps over the lazy dog because it was"
MLP_AE, ATTN_AE = "ae-tiny-mlp", "ae-tiny-attn"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoadedModel]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_EXPLAINER_HOME", str(tmp_path_factory.mktemp("ne-home")))
        yield load_model(M, device="cpu", mlp_autoencoder=MLP_AE, attn_autoencoder=ATTN_AE)


@pytest.fixture(scope="module")
def tokens(model: LoadedModel) -> tuple[int, ...]:
    return live.tokenize_prompt(model, PROMPT)


def _cache(model: LoadedModel, tokens: Sequence[int], names: list[str]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(torch.tensor([list(tokens)]), names_filter=names)
    return {n: cache[n][0] for n in names}


def _run(model: LoadedModel, request: ForwardRequest) -> Any:
    return run_batch(model, [request])[0]


def test_neuron_values_equal_run_with_cache(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    node = NodeId(M, NodeKind.MLP_NEURON, 1, 37)
    result = _run(model, live.request_for(tokens, nodes=[node]))
    direct = _cache(model, tokens, [hook_names.mlp_post(1)])[hook_names.mlp_post(1)][:, 37]
    values = live.node_activations(model, result, node)
    assert len(values) == len(tokens) == 12
    assert torch.allclose(torch.tensor(values), direct, atol=1e-6)


def test_attention_rows_equal_hand_computed_write_norm(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    layer, head = 1, 3
    result = _run(model, live.request_for(tokens, nodes=[NodeId(M, NodeKind.ATTENTION_HEAD, layer, head)]))
    rows = live.attention_rows(model, result, layer, head)
    cache = _cache(model, tokens, [hook_names.attn_pattern(layer), hook_names.attn_v(layer)])
    pattern, v = cache[hook_names.attn_pattern(layer)], cache[hook_names.attn_v(layer)]
    w_o = model.bridge.blocks[layer].attn.W_O[head].detach()  # [d_head, d_model]
    assert [len(r) for r in rows] == list(range(1, len(tokens) + 1))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            expected = pattern[head, i, j] * torch.linalg.vector_norm(v[j, head] @ w_o)
            assert value == pytest.approx(float(expected), abs=1e-6)
    assert sum(rows[-1]) > 0


def test_latent_values_equal_encoding_the_input_location(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    mlp_latent = NodeId(M, NodeKind.MLP_AUTOENCODER_LATENT, 0, 11, MLP_AE)
    attn_latent = NodeId(M, NodeKind.ATTENTION_AUTOENCODER_LATENT, 1, 200, ATTN_AE)
    result = _run(model, live.request_for(tokens, nodes=[mlp_latent, attn_latent]))
    cache = _cache(model, tokens, [hook_names.mlp_post(0), hook_names.attn_out(1)])
    assert model.mlp_autoencoder is not None and model.attn_autoencoder is not None
    mlp_expected = model.mlp_autoencoder.layers[0].encode(cache[hook_names.mlp_post(0)])  # [pos, 512]
    attn_expected = model.attn_autoencoder.layers[1].encode(cache[hook_names.attn_out(1)])  # [pos, 256]
    mlp_values = torch.tensor(live.node_activations(model, result, mlp_latent))
    assert torch.allclose(mlp_values, mlp_expected[:, 11], atol=1e-5)
    attn_values = torch.tensor(live.node_activations(model, result, attn_latent))
    assert torch.allclose(attn_values, attn_expected[:, 200], atol=1e-5)
    assert torch.allclose(result.activations[hook_names.ae_latents(attn_latent.kind, 1)], attn_expected, atol=1e-5)
    assert (mlp_expected > 0).float().mean() > 0.1 and (attn_expected > 0).float().mean() > 0.1


def test_inserted_autoencoders_leave_logits_unchanged(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    every_latent = [
        hook_names.ae_latents(kind, layer)
        for kind in (NodeKind.MLP_AUTOENCODER_LATENT, NodeKind.ATTENTION_AUTOENCODER_LATENT)
        for layer in range(2)
    ]
    inserted = _run(model, ForwardRequest(tokens, frozenset(every_latent), lm_loss=True))
    plain = _run(model, ForwardRequest(tokens, lm_loss=True))
    with torch.no_grad():
        direct = model.bridge(torch.tensor([list(tokens)]))[0, -1]
    assert torch.allclose(plain.last_logits, direct, atol=1e-6)
    assert torch.allclose(inserted.last_logits, plain.last_logits, atol=1e-5)
    assert inserted.lm_loss == pytest.approx(plain.lm_loss, abs=1e-5)
    # ...yet the latents are live: ablating one changes the output.
    latent = NodeId(M, NodeKind.MLP_AUTOENCODER_LATENT, 0, 3, MLP_AE)
    ablated = _run(model, ForwardRequest(tokens, ablations=(live.make_ablation(model, latent, [], 10.0, len(tokens)),)))
    assert not torch.allclose(ablated.last_logits, plain.last_logits, atol=1e-3)


def _direct_downstream(model: LoadedModel, tokens: Sequence[int], hook: str, fn: Any) -> torch.Tensor:
    store: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook: Any) -> None:
        store["x"] = x.detach().clone()

    with torch.no_grad():
        model.bridge.run_with_hooks(
            torch.tensor([list(tokens)]), fwd_hooks=[(hook, fn), (hook_names.mlp_post(1), keep)]
        )
    return store["x"][0]


def test_neuron_and_head_ablations_match_direct_hooks(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    n = len(tokens)
    neuron = NodeId(M, NodeKind.MLP_NEURON, 0, 7)
    head = NodeId(M, NodeKind.ATTENTION_HEAD, 1, 2)
    downstream = hook_names.mlp_post(1)

    def zero_neuron(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, [1, 2], 7] = 3.0
        return x

    def flat_head(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, 2, [5], :] = 0.0
        return x

    baseline = _run(model, ForwardRequest(tokens, frozenset({downstream})))
    for node, positions, value, hook, fn in (
        (neuron, [1, 2], 3.0, hook_names.mlp_post(0), zero_neuron),
        (head, [5], 0.0, hook_names.attn_pattern(1), flat_head),
    ):
        ablation = live.make_ablation(model, node, positions, value, n)
        ours = _run(model, ForwardRequest(tokens, frozenset({downstream}), ablations=(ablation,))).activations[
            downstream
        ]
        direct = _direct_downstream(model, tokens, hook, fn)
        assert torch.allclose(ours, direct, atol=1e-6)
        assert not torch.allclose(ours, baseline.activations[downstream], atol=1e-4), f"{node} ablation had no effect"


def test_latent_ablation_matches_hand_inserted_autoencoder(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    assert model.mlp_autoencoder is not None
    ae = model.mlp_autoencoder.layers[0]
    node = NodeId(M, NodeKind.MLP_AUTOENCODER_LATENT, 0, 5, MLP_AE)

    def hand(x: torch.Tensor, hook: Any) -> torch.Tensor:
        latents = ae.encode(x)
        patched = latents.clone()
        patched[:, [0, 4], 5] = 2.5
        return ae.decode(patched) + (x - ae.decode(latents))

    ablation = live.make_ablation(model, node, [0, 4], 2.5, len(tokens))
    ours = _run(model, ForwardRequest(tokens, frozenset({hook_names.mlp_post(1)}), ablations=(ablation,)))
    direct = _direct_downstream(model, tokens, hook_names.mlp_post(0), hand)
    assert torch.allclose(ours.activations[hook_names.mlp_post(1)], direct, atol=1e-5)


def test_act_times_grad_equals_autograd_by_hand(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    loss = live.loss_config(model, [" the", " a"], [" dog"])
    captures, grads = live.hooks_for_top_nodes(model, NodeKind.MLP_NEURON, live.RankBy.ACT_TIMES_GRAD)
    # The full gradient (the final LayerNorm scale attached); the detached default is in test_debugger_core.py.
    result = _run(model, ForwardRequest(tokens, captures, grads, target=Target(loss, detach_layer_norm_scale=False)))
    kept: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook: Any) -> torch.Tensor:
        kept["x"] = x
        return x

    with torch.enable_grad():
        logits = model.bridge.run_with_hooks(torch.tensor([list(tokens)]), fwd_hooks=[(hook_names.mlp_post(0), keep)])
        last = logits[0, -1]
        value = last[list(loss.target_tokens)].mean() - last[list(loss.distractor_tokens)].mean()
        (grad,) = torch.autograd.grad(value, [kept["x"]])
    assert result.loss == pytest.approx(float(value), abs=1e-5)
    assert torch.allclose(result.grads[hook_names.mlp_post(0)], grad[0], atol=1e-6)
    top = live.top_nodes(model, result, NodeKind.MLP_NEURON, 5, live.RankBy.ACT_TIMES_GRAD)
    layer0 = kept["x"][0].detach() * grad[0]
    layer1 = result.activations[hook_names.mlp_post(1)] * result.grads[hook_names.mlp_post(1)]
    brute = sorted(
        ((float(s), layer, pos, unit) for layer, t in enumerate((layer0, layer1)) for (pos, unit), s in _items(t)),
        reverse=True,
    )[:5]
    assert [(s.node.layer, s.token, s.node.index) for s in top] == [(b[1], b[2], b[3]) for b in brute]


def _items(t: torch.Tensor) -> Iterator[tuple[tuple[int, int], torch.Tensor]]:
    for pos in range(t.shape[0]):
        for unit in range(t.shape[1]):
            yield (pos, unit), t[pos, unit]


def test_top_nodes_by_write_norm_and_heads(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    captures, _ = live.hooks_for_top_nodes(model, NodeKind.MLP_NEURON, live.RankBy.WRITE_NORM)
    head_captures, _ = live.hooks_for_top_nodes(model, NodeKind.ATTENTION_HEAD, live.RankBy.WRITE_NORM)
    result = _run(model, ForwardRequest(tokens, captures | head_captures))
    top = live.top_nodes(model, result, NodeKind.MLP_NEURON, 3, live.RankBy.WRITE_NORM, token=4)
    w_out = model.bridge.blocks[1].mlp.W_out.detach()
    for score in top:
        assert score.token == 4
        act = result.activations[hook_names.mlp_post(score.node.layer)][4, score.node.index]
        w = model.bridge.blocks[score.node.layer].mlp.W_out.detach()[score.node.index]
        assert score.value == pytest.approx(float(act * torch.linalg.vector_norm(w)), abs=1e-6)
    assert w_out.shape == (256, 64)
    # Heads rank per (query, key) pair (issue 15: TDB's meaning): WRITE_NORM is the pair's attn_write_norm,
    # ACTIVATION its attention probability.
    heads = live.top_nodes(model, result, NodeKind.ATTENTION_HEAD, 2, live.RankBy.WRITE_NORM)
    best = heads[0]
    assert best.key_token is not None and best.key_token <= best.token
    rows = live.attention_rows(model, result, best.node.layer, best.node.index)
    assert best.value == pytest.approx(rows[best.token][best.key_token], abs=1e-5)
    assert best.value == pytest.approx(max(v for r in rows for v in r), abs=1e-6) and heads[0].value >= heads[1].value
    probs = live.top_nodes(model, result, NodeKind.ATTENTION_HEAD, 3, live.RankBy.ACTIVATION, largest=False)
    for p in probs:
        assert p.key_token is not None and p.key_token <= p.token
        pattern = live.attention_pattern(result, p.node.layer, p.node.index)
        assert p.value == pytest.approx(pattern[p.token][p.key_token], abs=1e-7)


def test_top_logits_and_lm_loss(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    result = _run(model, ForwardRequest(tokens, lm_loss=True))
    assert _run(model, ForwardRequest(tokens)).lm_loss is None
    top = live.top_logits(model, result, 5)
    with torch.no_grad():
        logits = model.bridge(torch.tensor([list(tokens)]))[0]
    assert [t.token_id for t in top] == torch.topk(logits[-1], 5).indices.tolist()
    assert top[0].probability == pytest.approx(float(torch.softmax(logits[-1], -1).max()), rel=1e-5)
    expected = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(tokens[1:]))
    assert result.lm_loss == pytest.approx(float(expected), abs=1e-5)


def test_bad_inputs_are_typed(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    with pytest.raises(BadInput, match="empty"):
        live.tokenize_prompt(model, "")
    with pytest.raises(BadInput, match="reads at most 128") as info:
        live.tokenize_prompt(model, " a" * 129)
    assert info.value.fields["tokens"] == 129
    with pytest.raises(BadInput, match="is 2 tokens"):
        live.loss_config(model, [" Paris is"])
    with pytest.raises(BadInput, match="MLP neurons 0..255"):
        live.make_ablation(model, NodeId(M, NodeKind.MLP_NEURON, 0, 256), [0], 0.0, len(tokens))
    with pytest.raises(BadInput, match="at token 99"):
        live.make_ablation(model, NodeId(M, NodeKind.ATTENTION_HEAD, 0, 1), [99], 0.0, len(tokens))
    with pytest.raises(BadInput, match="not loaded"):
        live.check_node(model, NodeId(M, NodeKind.MLP_AUTOENCODER_LATENT, 0, 1, "ae-resid-delta-mlp-v4"))
    with pytest.raises(BadInput, match=r"layers 0\.\.1"):
        live.check_node(model, NodeId(M, NodeKind.ATTENTION_HEAD, 2, 0))


# ---- the engine --------------------------------------------------------------------------------
async def test_fifty_concurrent_requests_on_one_prompt_share_one_forward(
    model: LoadedModel, tokens: tuple[int, ...]
) -> None:
    engine = InferenceEngine(model, max_batch_size=16, max_wait_ms=5)
    try:
        nodes = [NodeId(M, NodeKind.MLP_NEURON, i % 2, i) for i in range(50)]
        request = live.request_for(tokens, nodes=nodes)
        results = await asyncio.gather(*(engine.run(request) for _ in nodes))
        assert engine.forward_count == 1
        direct = _cache(model, tokens, [hook_names.mlp_post(0), hook_names.mlp_post(1)])
        for node, result in zip(nodes, results, strict=True):
            expected = direct[hook_names.mlp_post(node.layer)][:, node.index]
            assert torch.allclose(torch.tensor(live.node_activations(model, result, node)), expected, atol=1e-6)
    finally:
        await engine.close()


async def test_padded_batches_equal_unbatched_runs(model: LoadedModel) -> None:
    prompts = [f"Prompt number {i} says" + " hello" * (i % 7) for i in range(20)]
    requests = []
    for i, prompt in enumerate(prompts):
        toks = live.tokenize_prompt(model, prompt)
        nodes = [NodeId(M, NodeKind.MLP_NEURON, 1, i), NodeId(M, NodeKind.ATTENTION_HEAD, 0, i % 4)]
        nodes.append(NodeId(M, NodeKind.ATTENTION_AUTOENCODER_LATENT, 1, i, ATTN_AE))
        requests.append(live.request_for(toks, nodes=nodes))
    engine = InferenceEngine(model, max_batch_size=8, max_wait_ms=5)
    try:
        batched = await asyncio.gather(*(engine.run(r) for r in requests))
        assert engine.forward_count == 3  # 20 distinct requests, batches of at most 8
    finally:
        await engine.close()
    assert len({len(r.tokens) for r in requests}) > 3
    for request, result in zip(requests, batched, strict=True):
        alone = _run(model, request)
        assert result.activations.keys() == alone.activations.keys()
        for hook, value in alone.activations.items():
            assert result.activations[hook].shape == value.shape
            assert torch.allclose(result.activations[hook], value, atol=1e-5), hook
        assert torch.allclose(result.last_logits, alone.last_logits, atol=1e-5)


async def test_simulated_oom_splits_and_retries(model: LoadedModel) -> None:
    sizes: list[int] = []

    def small_gpu(requests: Sequence[ForwardRequest]) -> None:
        sizes.append(len(requests))
        if len(requests) > 2:
            raise torch.cuda.OutOfMemoryError("simulated")

    engine = InferenceEngine(model, max_batch_size=8, max_wait_ms=5, before_batch=small_gpu)
    try:
        requests = [
            ForwardRequest(live.tokenize_prompt(model, f"text {i}"), frozenset({"blocks.0.mlp.hook_post"}))
            for i in range(8)
        ]
        results = await asyncio.gather(*(engine.run(r) for r in requests))
        assert [r.tokens for r in results] == [r.tokens for r in requests]
        assert sizes == [8, 4, 2, 2, 4, 2, 2]
        assert engine.oom_count == 3
    finally:
        await engine.close()


async def test_a_single_request_that_still_ooms_fails_typed_and_the_engine_lives_on(
    model: LoadedModel,
) -> None:
    broken = threading.Event()
    broken.set()

    def maybe_oom(requests: Sequence[ForwardRequest]) -> None:
        if broken.is_set():
            raise torch.cuda.OutOfMemoryError("simulated")

    engine = InferenceEngine(model, max_batch_size=4, max_wait_ms=1, before_batch=maybe_oom)
    request = ForwardRequest(live.tokenize_prompt(model, "hello"))
    try:
        with pytest.raises(LimitExceeded, match="out of GPU memory") as info:
            await engine.run(request)
        assert info.value.code == "LIMIT_EXCEEDED"
        broken.clear()
        assert (await engine.run(request)).tokens == request.tokens
    finally:
        await engine.close()


async def test_errors_reach_the_right_waiters(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    fail = threading.Event()

    def maybe_fail(requests: Sequence[ForwardRequest]) -> None:
        if fail.is_set():
            raise RuntimeError("batch exploded")

    engine = InferenceEngine(model, max_batch_size=8, max_wait_ms=5, before_batch=maybe_fail)
    try:
        good = [ForwardRequest(tokens[:i]) for i in range(1, 4)]
        bad = ForwardRequest(tokens, target=Target(LossConfig((50300,))))
        outcomes = await asyncio.gather(*(engine.run(r) for r in [*good, bad]), return_exceptions=True)
        assert [type(o).__name__ for o in outcomes] == ["ForwardResult"] * 3 + ["BadInput"]
        fail.set()
        outcomes = await asyncio.gather(*(engine.run(r) for r in good), return_exceptions=True)
        assert all(isinstance(o, RuntimeError) and str(o) == "batch exploded" for o in outcomes)
        fail.clear()
        assert (await engine.run(good[0])).tokens == good[0].tokens
    finally:
        await engine.close()


async def test_a_batch_that_fails_is_retried_row_by_row(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    """One request that breaks any batch it is in (not out of memory) fails alone; its batch-mates run."""
    poison = ForwardRequest(tokens[:5])

    def explode_with_poison(requests: Sequence[ForwardRequest]) -> None:
        if poison in requests:
            raise FloatingPointError("overflow in this row")

    engine = InferenceEngine(model, max_batch_size=8, max_wait_ms=20, before_batch=explode_with_poison)
    try:
        good = [ForwardRequest(tokens[:i]) for i in (1, 2, 3, 4, 6, 7)]
        outcomes = await asyncio.gather(
            *(engine.run(r) for r in [*good[:3], poison, *good[3:]]), return_exceptions=True
        )
        assert [type(o).__name__ for o in outcomes] == ["ForwardResult"] * 3 + ["FloatingPointError"] + [
            "ForwardResult"
        ] * 3
        assert engine.forward_count >= 2  # the failed batch, then the rows
    finally:
        await engine.close()


async def test_gradient_requests_batch_apart_and_call_runs_on_the_worker(
    model: LoadedModel, tokens: tuple[int, ...]
) -> None:
    engine = InferenceEngine(model, max_batch_size=8, max_wait_ms=5)
    try:
        loss = live.loss_config(model, [" the"])
        captures, grads = live.hooks_for_top_nodes(model, NodeKind.ATTENTION_HEAD, live.RankBy.ACT_TIMES_GRAD)
        with_grad = ForwardRequest(tokens, captures, grads, target=Target(loss))
        plain = ForwardRequest(tokens, captures)
        a, b = await asyncio.gather(engine.run(with_grad), engine.run(plain))
        assert engine.forward_count == 2
        assert a.grads and not b.grads and a.loss is not None
        thread = await engine.call(lambda m: threading.current_thread().name)
        assert thread.startswith("inference")
        scores = live.top_nodes(model, a, NodeKind.ATTENTION_HEAD, 3, live.RankBy.ACT_TIMES_GRAD, largest=False)
        assert scores[0].value <= scores[1].value <= scores[2].value
    finally:
        await engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        await engine.run(plain)


def test_bad_engine_settings_fail_at_construction(model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        InferenceEngine(model, max_batch_size=0)


def test_memory_debugging_is_a_no_op_without_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        assert start_memory_recording()
        path = dump_memory_snapshot(tmp_path)
        assert path is not None and path.is_file()
    else:
        assert start_memory_recording() is False
        assert dump_memory_snapshot(tmp_path) is None


def test_latent_gradients_flow_through_the_decoder(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    assert model.mlp_autoencoder is not None
    latents, post = hook_names.ae_latents(NodeKind.MLP_AUTOENCODER_LATENT, 0), hook_names.mlp_post(0)
    loss = live.loss_config(model, [" the"], [" dog"])
    captures, grads = live.hooks_for_top_nodes(model, NodeKind.MLP_AUTOENCODER_LATENT, live.RankBy.ACT_TIMES_GRAD)
    result = _run(model, ForwardRequest(tokens, captures, grads | {post}, target=Target(loss)))
    # output = decode(latents') + (x - decode(latents)): d loss/d latents' = (d loss/d x) @ W_dec.
    expected = result.grads[post] @ model.mlp_autoencoder.layers[0].decoder_weight
    assert result.grads[latents].abs().max() > 0
    assert torch.allclose(result.grads[latents], expected, atol=1e-6)
    top = live.top_nodes(model, result, NodeKind.MLP_AUTOENCODER_LATENT, 1, live.RankBy.ACT_TIMES_GRAD, token=3)
    assert top[0].node.autoencoder == "ae-tiny-mlp" and top[0].token == 3


def test_requests_for_the_same_pass_merge_their_hooks(model: LoadedModel, tokens: tuple[int, ...]) -> None:
    neuron = NodeId(M, NodeKind.MLP_NEURON, 0, 1)
    head = NodeId(M, NodeKind.ATTENTION_HEAD, 1, 0)
    a, b = live.request_for(tokens, nodes=[neuron]), live.request_for(tokens, nodes=[head], lm_loss=True)
    merged = a.merged(b)
    assert merged.captures == hook_names.hooks_for(neuron) | hook_names.hooks_for(head) and merged.lm_loss
    assert a.same_pass(b) and hash(merged) == hash(b.merged(a))
    other = live.request_for(tokens[:-1], nodes=[neuron])
    assert not a.same_pass(other)
    with pytest.raises(ValueError, match="same tokens"):
        a.merged(other)


def test_passes_unembed_only_last_positions_and_stop_early_without_logits(
    model: LoadedModel, tokens: tuple[int, ...]
) -> None:
    short = tokens[:5]
    full, cut = run_batch(model, [ForwardRequest(tokens), ForwardRequest(short)])
    with torch.no_grad():
        assert torch.allclose(full.last_logits, model.bridge(torch.tensor([list(tokens)]))[0, -1], atol=1e-5)
        assert torch.allclose(cut.last_logits, model.bridge(torch.tensor([list(short)]))[0, -1], atol=1e-5)
    ran: list[int] = []
    later = model.hook_point(hook_names.mlp_post(1))
    later.add_hook(lambda x, hook: ran.append(x.shape[0]), level=99)
    try:
        early = _run(model, ForwardRequest(tokens, frozenset({hook_names.mlp_post(0)}), logits=False))
        assert ran == [], "layer 1 ran although nothing after layer 0 was needed"
        with_logits = _run(model, ForwardRequest(tokens, frozenset({hook_names.mlp_post(0)})))
        assert ran == [1]
    finally:
        later.remove_hooks("fwd", level=99)
    assert early.last_logits.numel() == 0
    assert torch.equal(early.activations[hook_names.mlp_post(0)], with_logits.activations[hook_names.mlp_post(0)])
    merged = ForwardRequest(tokens, logits=False).merged(ForwardRequest(tokens))
    assert merged.logits and merged.needs_logits
