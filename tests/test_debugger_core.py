"""The debugger's core against direct torch autograd: every node-table column, every target (the four
losses, LayerNorm scale detached or not, nodes traced through Q, K, QK and V, with and without a
downstream node, latents), token attribution, the two-condition table and the logit lens — on tiny-gpt2
with and without its autoencoders, and on a GPT-2-small-shaped model with random weights (LayerNorm
gains, biases and all), two prompts each. The reference (``tests/gpt2_reference.py``) is a float64 GPT-2
written from the HuggingFace checkpoint alone; agreement is within 1e-5 of each column's largest value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from neuron_explainer.inference import live, logit_lens, node_table, per_token
from neuron_explainer.inference.forward import run_batch
from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult
from neuron_explainer.inference.targets import AttentionPath, LossConfig, LossKind, NodeTrace, Target
from neuron_explainer.inference.values import Column, TableKind
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.models.tokenizer import gpt2_tokenizer
from neuron_explainer.nodes import NodeId, NodeKind
from tests import gpt2_reference as ref

PROMPTS = (
    ("The quick brown fox jumps over the lazy dog because", " it", " the"),
    ("When Mary and John went to the store, John gave a drink to", " Mary", " John"),
)
TOL = 1e-5
ALL_KINDS = (*node_table.DEFAULT_KINDS, TableKind.MLP_AUTOENCODER_LATENT, TableKind.ATTENTION_AUTOENCODER_LATENT)
_REF_KIND = {
    TableKind.EMBEDDING: "embedding",
    TableKind.MLP_NEURON: "mlp",
    TableKind.ATTENTION_HEAD: "head",
    TableKind.MLP_AUTOENCODER_LATENT: "mlp_latent",
    TableKind.ATTENTION_AUTOENCODER_LATENT: "attn_latent",
}


@dataclass
class Subject:
    model: LoadedModel
    weights: ref.Weights
    aes: dict[str, ref.InsertedAutoencoder]
    kinds: tuple[TableKind, ...]


def _subject(model: LoadedModel) -> Subject:
    aes = {ae.location: ref.InsertedAutoencoder(ae.location, ae.layers) for ae in model.autoencoders.values()}
    kinds = ALL_KINDS if model.autoencoders else node_table.DEFAULT_KINDS
    return Subject(model, ref.Weights.load(model.checkpoint), aes, kinds)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("ne-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_EXPLAINER_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def tiny_ae(home: Path) -> Subject:
    return _subject(
        load_model("tiny-gpt2", device="cpu", mlp_autoencoder="ae-tiny-mlp", attn_autoencoder="ae-tiny-attn")
    )


@pytest.fixture(scope="module")
def tiny(home: Path) -> Subject:
    return _subject(load_model("tiny-gpt2", device="cpu"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, home: Path) -> Subject:
    """GPT-2 small's shape with random weights, LayerNorm gains and biases perturbed (a fresh GPT-2 has
    gains 1 and biases 0, which would hide any LayerNorm or bias left out)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    folder = tmp_path_factory.mktemp("gpt2-small-shaped")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        config = GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=1024, n_ctx=1024)  # type: ignore[call-arg]
        hf = GPT2LMHeadModel(config)
        with torch.no_grad():
            for name, p in hf.named_parameters():
                if name.endswith("bias"):
                    p.normal_(0.0, 0.05)
                elif ".ln_" in name:
                    p.normal_(1.0, 0.2)
    hf.save_pretrained(str(folder))
    gpt2_tokenizer().save_pretrained(str(folder))
    return _subject(load_model(str(folder), device="cpu"))


# ---- targets, written twice: for the server and for the reference --------------------------------
@dataclass(frozen=True)
class Mode:
    name: str
    server: Target
    reference: ref.Trace


def _modes(s: Subject, tokens: list[int], target: int, distractor: int) -> list[Mode]:
    m, n = s.model, len(tokens)
    top = m.shape.n_layers - 1
    head_layer, neuron_layer = max(0, top - 1), top
    diff = LossConfig((target,), (distractor,))
    diff_ref = ("LOGIT_DIFF", [target], [distractor])

    def head(path: AttentionPath, token: int, key: int, down: NodeTrace | None = None) -> NodeTrace:
        return NodeTrace(NodeId(m.name, NodeKind.ATTENTION_HEAD, head_layer, 1), token, key, path, down)

    neuron = NodeTrace(NodeId(m.name, NodeKind.MLP_NEURON, neuron_layer, 17), n - 2)
    modes = [
        Mode("logit_diff", Target(diff), ref.Trace(loss=diff_ref)),
        Mode(
            "logit_diff, scale attached",
            Target(diff, detach_layer_norm_scale=False),
            ref.Trace(loss=diff_ref, detach=False),
        ),
        Mode(
            "logit_minus_mean",
            Target(LossConfig((target,), kind=LossKind.LOGIT_MINUS_MEAN)),
            ref.Trace(loss=("LOGIT_MINUS_MEAN", [target], [])),
        ),
        Mode(
            "probs",
            Target(LossConfig((target, distractor), kind=LossKind.PROBS)),
            ref.Trace(loss=("PROBS", [target, distractor], [])),
        ),
        Mode("zero", Target(LossConfig((), kind=LossKind.ZERO)), ref.Trace(loss=("ZERO", [], []))),
        Mode("neuron", Target(trace=neuron), ref.Trace(node=("mlp", neuron_layer, 17), token=n - 2)),
    ]
    for path in (AttentionPath.Q, AttentionPath.K, AttentionPath.QK):
        modes.append(
            Mode(
                f"head {path.value}",
                Target(trace=head(path, n - 2, 2)),
                ref.Trace(node=("head", head_layer, 1), token=n - 2, key=2, path=path.value),
            )
        )
    modes.append(
        Mode(
            "head V onto the loss",
            Target(diff, head(AttentionPath.V, n - 1, 3)),
            ref.Trace(loss=diff_ref, node=("head", head_layer, 1), token=n - 1, key=3, path="V"),
        )
    )
    down = NodeTrace(NodeId(m.name, NodeKind.MLP_NEURON, neuron_layer, 5), n - 2)
    modes.append(
        Mode(
            "head V onto a neuron",
            Target(trace=head(AttentionPath.V, n - 2, 1, down)),
            ref.Trace(
                node=("head", head_layer, 1),
                token=n - 2,
                key=1,
                path="V",
                downstream=ref.Trace(node=("mlp", neuron_layer, 5), token=n - 2),
            ),
        )
    )
    for kind, what, ae_layer in (
        (NodeKind.MLP_AUTOENCODER_LATENT, "mlp_latent", 0),
        (NodeKind.ATTENTION_AUTOENCODER_LATENT, "attn_latent", top),
    ):
        ae = m.autoencoder_for(kind)
        if ae is not None:
            node = NodeId(m.name, kind, ae_layer, 7, ae.name)
            modes.append(
                Mode(what, Target(trace=NodeTrace(node, n - 3)), ref.Trace(node=(what, ae_layer, 7), token=n - 3))
            )
    return modes


def _pass(s: Subject, tokens: list[int], target: Target, ablations: tuple[Ablation, ...] = ()) -> ForwardResult:
    values, directs = node_table.table_hooks(s.model, s.kinds)
    request = ForwardRequest(tuple(tokens), values, directs, ablations, target, directs=directs)
    return run_batch(s.model, [request])[0]


def _close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    scale = float(theirs.abs().max())
    worst = float((ours.double() - theirs).abs().max())
    assert worst <= TOL * scale or worst == 0.0, f"{what}: off by {worst:.3g}, largest value {scale:.3g}"


def _index(entry: node_table.TableEntry) -> tuple[int, ...]:
    if entry.kind is TableKind.EMBEDDING:
        return (entry.token,)
    assert entry.node is not None
    if entry.kind is TableKind.ATTENTION_HEAD:
        assert entry.key_token is not None
        return (entry.node.layer, entry.node.index, entry.token, entry.key_token)
    return (entry.node.layer, entry.token, entry.node.index)


_BATCHED: dict[tuple[int, str], dict[str, tuple[Mode, ForwardResult]]] = {}


def _batched(s: Subject, tokens: list[int], target: int, distractor: int) -> dict[str, tuple[Mode, ForwardResult]]:
    """Every mode of one prompt as one padded batch: one pass, each row its own target (rows must not
    leak into each other), and a twelfth of the time of one pass per mode."""
    key = (id(s), " ".join(map(str, tokens)))
    if key not in _BATCHED:
        modes = _modes(s, tokens, target, distractor)
        values, directs = node_table.table_hooks(s.model, s.kinds)
        requests = [ForwardRequest(tuple(tokens), values, directs, (), m.server, directs=directs) for m in modes]
        results = run_batch(s.model, requests)
        _BATCHED[key] = {m.name: (m, r) for m, r in zip(modes, results, strict=True)}
    return _BATCHED[key]


def _check(s: Subject, prompt: tuple[str, str, str], mode_name: str) -> None:
    text, target_text, distractor_text = prompt
    tokens = s.model.to_tokens(text)
    target, distractor = s.model.to_tokens(target_text)[0], s.model.to_tokens(distractor_text)[0]
    mode, result = _batched(s, tokens, target, distractor)[mode_name]
    scalar, theirs = ref.columns(s.weights, tokens, mode.reference, s.aes)
    ours_scalar = result.traced if mode.server.trace is not None else result.loss
    assert ours_scalar is not None
    assert abs(ours_scalar - float(scalar)) <= TOL * max(abs(float(scalar)), 1e-3), (ours_scalar, float(scalar))
    # Every column of every node (not only the rows picked).
    for kind in s.kinds:
        ours = node_table.columns(s.model, result, kind)
        for column in Column:
            _close(ours[column], theirs[_REF_KIND[kind]][column.value], f"{mode_name}: {kind.name} {column.name}")
    _close(
        torch.tensor(per_token.token_attribution(result)), theirs["embedding"]["act_times_grad"], "token attribution"
    )
    # The table: each row's four columns, and per column its k extremes over all kinds together.
    k = 6
    rows = node_table.node_table(s.model, result, s.kinds, k)
    assert len({r.entry for r in rows}) == len(rows) and len(rows) >= 2 * k
    for column in Column:
        everything = torch.cat([theirs[_REF_KIND[kind]][column.value].flatten() for kind in s.kinds])
        scale = float(everything.abs().max()) or 1.0
        picked = sorted(float(getattr(r.values, column.value)) for r in rows)
        heads = theirs["head"][column.value]
        causal = torch.ones(heads.shape[-1], heads.shape[-1], dtype=torch.bool).tril()
        pool = (
            torch.cat(
                [
                    theirs[_REF_KIND[kind]][column.value].flatten()
                    if kind is not TableKind.ATTENTION_HEAD
                    else heads[..., causal].flatten()
                    for kind in s.kinds
                ]
            )
            .sort()
            .values
        )
        for got, want in zip(picked[-k:], pool[-k:].tolist(), strict=True):
            assert abs(got - want) <= TOL * scale, (mode_name, column, picked[-k:], pool[-k:])
        for got, want in zip(picked[:k], pool[:k].tolist(), strict=True):
            assert abs(got - want) <= TOL * scale, (mode_name, column, picked[:k], pool[:k])
        for row in rows:
            want_value = float(theirs[_REF_KIND[row.entry.kind]][column.value][_index(row.entry)])
            assert abs(getattr(row.values, column.value) - want_value) <= TOL * scale


MODE_NAMES = [
    "logit_diff",
    "logit_diff, scale attached",
    "logit_minus_mean",
    "probs",
    "zero",
    "neuron",
    "head Q",
    "head K",
    "head QK",
    "head V onto the loss",
    "head V onto a neuron",
]


@pytest.mark.parametrize("mode", [*MODE_NAMES, "mlp_latent", "attn_latent"])
@pytest.mark.parametrize("prompt", PROMPTS, ids=["fox", "ioi"])
def test_tiny_gpt2_with_autoencoders(tiny_ae: Subject, prompt: tuple[str, str, str], mode: str) -> None:
    _check(tiny_ae, prompt, mode)


@pytest.mark.parametrize("mode", MODE_NAMES)
@pytest.mark.parametrize("prompt", PROMPTS, ids=["fox", "ioi"])
def test_tiny_gpt2_without_autoencoders(tiny: Subject, prompt: tuple[str, str, str], mode: str) -> None:
    _check(tiny, prompt, mode)


@pytest.mark.parametrize(
    ("prompt", "mode"),
    [(PROMPTS[i % 2], mode) for i, mode in enumerate(MODE_NAMES)],
    ids=[f"{('fox', 'ioi')[i % 2]}-{mode}" for i, mode in enumerate(MODE_NAMES)],
)
def test_gpt2_small_shaped(small: Subject, prompt: tuple[str, str, str], mode: str) -> None:
    """Every mode, the two prompts taking turns: each check here costs a 12-layer float64 reference
    (tiny-gpt2 runs every mode on both prompts)."""
    _check(small, prompt, mode)


def test_k_and_v_traces_differ_as_the_hand_computation(tiny: Subject) -> None:
    """A layer-0 head reads the embeddings directly, so its gradients can be written by hand: through K
    the logit reaches only the key token, ``J_ln(emb[k])ᵀ W_K q / sqrt(d)``; through V the direct effect
    on the loss reaches it as ``J_ln(emb[k])ᵀ A W_V (W_O g[q])`` — where ``J_ln``, with the scale
    detached, is ``(I - 11ᵀ/d) diag(w) / s``."""
    m, w = tiny.model, tiny.weights
    tokens = m.to_tokens(PROMPTS[0][0])
    n, (q, k, h) = len(tokens), (len(tokens) - 1, 3, 2)
    target = LossConfig((m.to_tokens(" it")[0],), (m.to_tokens(" the")[0],))
    node = NodeId(m.name, NodeKind.ATTENTION_HEAD, 0, h)
    through = {
        path: per_token.token_attribution(_pass(tiny, tokens, Target(target, NodeTrace(node, q, k, path))))
        for path in (AttentionPath.K, AttentionPath.V)
    }
    lw = w.layers[0]
    emb = (w.wte[torch.tensor(tokens)] + w.wpe[:n]).detach()
    d = emb.shape[1]
    centered = emb - emb.mean(-1, keepdim=True)
    s = (centered.pow(2).mean(-1, keepdim=True) + w.eps).sqrt()
    x = centered / s * lw["ln_1.weight"] + lw["ln_1.bias"]
    w_q, w_k, w_v = lw["attn.c_attn.weight"].split(d, dim=1)
    b_q, b_k, b_v = lw["attn.c_attn.bias"].split(d)
    sl = slice(h * (d // w.n_heads), (h + 1) * (d // w.n_heads))
    query = x[q] @ w_q[:, sl] + b_q[sl]
    keys = x[: q + 1] @ w_k[:, sl] + b_k[sl]
    prob = ((keys @ query) / (d // w.n_heads) ** 0.5).softmax(-1)[k]

    def through_ln(u: torch.Tensor) -> torch.Tensor:  # J_lnᵀ u at token k
        scaled = u * lw["ln_1.weight"] / s[k]
        return scaled - scaled.mean()

    p, loss_value = ref.differentiate(
        w, tokens, ref.Trace(loss=("LOGIT_DIFF", list(target.target_tokens), list(target.distractor_tokens)))
    )
    assert p.final_resid is not None
    (g,) = torch.autograd.grad(loss_value, p.final_resid)
    hand_k = torch.zeros(n, dtype=torch.float64)
    hand_v = torch.zeros(n, dtype=torch.float64)
    hand_k[k] = emb[k] @ through_ln(w_k[:, sl] @ query / (d // w.n_heads) ** 0.5)
    hand_v[k] = emb[k] @ through_ln(prob * (w_v[:, sl] @ (w.head_w_o(0)[h] @ g[q])))
    ours_k, ours_v = torch.tensor(through[AttentionPath.K]), torch.tensor(through[AttentionPath.V])
    _close(ours_k, hand_k, "K")
    _close(ours_v, hand_v, "V")
    _close(ours_k - ours_v, hand_k - hand_v, "K - V")
    assert (ours_k != 0).nonzero().flatten().tolist() == [k] and float(hand_k[k] - hand_v[k]) != 0.0


def test_two_condition_table_is_the_union_with_differences(tiny_ae: Subject) -> None:
    m = tiny_ae.model
    tokens = m.to_tokens(PROMPTS[1][0])
    target = Target(LossConfig((m.to_tokens(" Mary")[0],), (m.to_tokens(" John")[0],)))
    ablation = live.make_ablation(m, NodeId(m.name, NodeKind.MLP_NEURON, 1, 3), [], 40.0, len(tokens))
    left, right = _pass(tiny_ae, tokens, target), _pass(tiny_ae, tokens, target, (ablation,))
    k = 5
    rows = node_table.compare_tables(m, left, right, tiny_ae.kinds, k)
    left_rows = node_table.node_table(m, left, tiny_ae.kinds, k)
    right_rows = node_table.node_table(m, right, tiny_ae.kinds, k)
    expected = [r.entry for r in left_rows] + [
        r.entry for r in right_rows if r.entry not in {x.entry for x in left_rows}
    ]
    assert [r.entry for r in rows] == expected
    assert {r.entry for r in right_rows} - {r.entry for r in left_rows}, "the ablation should change the picks"
    left_cols = {kind: node_table.columns(m, left, kind) for kind in tiny_ae.kinds}
    right_cols = {kind: node_table.columns(m, right, kind) for kind in tiny_ae.kinds}
    for row in rows:
        for column in Column:
            lv = float(left_cols[row.entry.kind][column][_index(row.entry)])
            rv = float(right_cols[row.entry.kind][column][_index(row.entry)])
            assert getattr(row.left, column.value) == pytest.approx(lv, abs=1e-7)
            assert getattr(row.right, column.value) == pytest.approx(rv, abs=1e-7)
            assert getattr(row.difference, column.value) == pytest.approx(rv - lv, abs=1e-7)
    assert bool((right.activations[hook_names.mlp_post(1)][:, 3] == 40.0).all())


def test_component_sums_and_token_pairs_sum_the_columns(tiny: Subject) -> None:
    m = tiny.model
    tokens = m.to_tokens(PROMPTS[0][0])
    target = LossConfig((m.to_tokens(" it")[0],))
    result = _pass(tiny, tokens, Target(target))
    _, theirs = ref.columns(tiny.weights, tokens, ref.Trace(loss=("LOGIT_DIFF", list(target.target_tokens), [])))
    for column in Column:
        sums = per_token.component_sums(m, result, column)
        pairs = theirs["head"][column.value].sum(dim=(0, 1))  # [query, key]
        _close(torch.tensor([t.embedding for t in sums]), theirs["embedding"][column.value], "embedding")
        _close(torch.tensor([t.mlp for t in sums]), theirs["mlp"][column.value].sum(dim=(0, 2)), "mlp")
        _close(torch.tensor([t.attention_from for t in sums]), pairs.sum(dim=1), "attention from")
        _close(torch.tensor([t.attention_to for t in sums]), pairs.sum(dim=0), "attention to")
        top = per_token.token_pair_attribution(m, result, column, 4)
        causal = torch.ones_like(pairs, dtype=torch.bool).tril()
        best = pairs.masked_fill(~causal, float("-inf")).flatten().topk(4)
        assert [(p.token, p.key_token) for p in top] == [divmod(int(i), len(tokens)) for i in best.indices]


def test_logit_lens_from_the_weights(small: Subject) -> None:
    m, w = small.model, small.weights
    neuron = NodeId(m.name, NodeKind.MLP_NEURON, 4, 99)
    out = logit_lens.output_token_scores(m, neuron)
    lw = w.layers[4]
    write = lw["mlp.c_proj.weight"][99] * w.ln_f[0]
    expected = w.wte @ write
    _close(out, expected - expected.mean(), "output tokens")
    inputs = logit_lens.input_token_scores(m, neuron)
    centered = w.wte - w.wte.mean(-1, keepdim=True)
    normed = centered / (centered.pow(2).mean(-1, keepdim=True) + w.eps).sqrt() * lw["ln_2.weight"] + lw["ln_2.bias"]
    _close(inputs, normed @ lw["mlp.c_fc.weight"][:, 99] + lw["mlp.c_fc.bias"][99], "input tokens")
    top = logit_lens.top_tokens(m, out, 5)
    assert [t.token_id for t in top] == torch.topk(expected, 5).indices.tolist()
    head = NodeId(m.name, NodeKind.ATTENTION_HEAD, 3, 2)
    dummy = m.to_tokens(logit_lens.DUMMY_PROMPT)
    for path, side in ((AttentionPath.Q, {"k"}), (AttentionPath.K, {"q"})):
        scores = logit_lens.input_token_scores(m, head, path)
        p = ref.run(w, dummy, detach_ln=frozenset({(3, "ln_1")}), detach_sides={3: frozenset(side)})
        (grad,) = torch.autograd.grad(p.scores[3][2, 0, 0], p.resid_pre[3])
        _close(scores, w.wte @ grad[0], f"head input tokens through {path.value}")
