"""Live inference over GraphQL, on real servers (uvicorn on loopback) running tiny-gpt2 and its
autoencoders, compared with direct transformer-lens computations in this process.

Also starts the seed's command lines — ``--model_name gpt2-small`` from a seeded HuggingFace cache,
with ``--mlp_autoencoder_name``, ``--attn_autoencoder_name`` and both — for tiny-gpt2's autoencoders
and for TDB-format autoencoder files generated here for the seeded gpt2-small. Every server starts
once, all at the same time (start-up is mostly importing torch), and lives for the module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx
import pytest
import torch
import torch.nn.functional as F

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.models import hook_names
from neuron_explainer.models.autoencoder import Autoencoder, load_tdb_autoencoder, save_tdb_autoencoder
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.models.tokenizer import gpt2_tokenizer
from neuron_explainer.models.toy import build_toy_model
from tests.server import InProcessServer, ServerProcess, error_codes

M = "tiny-gpt2"
PROMPT = "The quick brown fox jumps over the lazy dog because it was"
ZEROS = "0" * 40
GEN_LATENTS, GEN_DEAD = 48, 4
"""Generated gpt2-small autoencoders: 48 latents, the last 4 dead in every layer (so 44 are exposed)."""
GEN_FOLDERS = {
    "ae-mlp-post-act-v4": ("mlp_post_act_v4", 256),
    "ae-resid-delta-mlp-v4": ("resid_delta_mlp_v4", 64),
    "ae-resid-delta-attn-v4": ("resid_delta_attn_v4", 64),
}


def _generated_ae(d: int, seed: int) -> Autoencoder:
    g = torch.Generator().manual_seed(seed)
    frequency = torch.rand(GEN_LATENTS, generator=g) * 0.2 + 0.01
    frequency[-GEN_DEAD:] = 0.0
    return Autoencoder(
        pre_bias=0.01 * torch.randn(d, generator=g),
        encoder_weight=torch.randn(GEN_LATENTS, d, generator=g) / d**0.5,
        latent_bias=-0.01 * torch.rand(GEN_LATENTS, generator=g),
        decoder_weight=torch.randn(d, GEN_LATENTS, generator=g) / d**0.5,
        activation_frequency=frequency,
    )


def _write_stored_records(root: Path) -> None:
    """A user dataset (index blob + TDB records) holding one neuron and one head of tiny-gpt2."""
    index = {
        "datasets": [
            {
                "name": "tiny-neurons",
                "model": M,
                "kind": "mlp_neuron",
                "autoencoder": None,
                "records_path": "tiny/neurons",
                "explanations_path": "tiny/neurons-expl",
            },
            {
                "name": "tiny-heads",
                "model": M,
                "kind": "attention_head",
                "autoencoder": None,
                "records_path": "tiny/heads",
                "explanations_path": "tiny/heads-expl",
            },
        ]
    }
    (root / "neuron-explainer-datasets.json").write_text(json.dumps(index))
    neuron = NeuronRecord(1, 40, [ActivationRecord(["a", "b"], [0.5, 0.125]), ActivationRecord(["c"], [0.25])])
    head = NeuronRecord(1, 2, [ActivationRecord(["a", "b"], [0.0, 0.0, 10.0])])
    for folder, record in (("tiny/neurons/1/40.json", neuron), ("tiny/heads/1/2.json", head)):
        (root / folder).parent.mkdir(parents=True, exist_ok=True)
        (root / folder).write_bytes(encode_neuron_record(record))


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("live")
    home, hf, ae_root, data = base / "home", base / "hf", base / "ae-root", base / "data"
    snapshot = hf / "hub" / "models--gpt2" / "snapshots" / ZEROS  # tiny GPT-2 weights under the `gpt2` id
    build_toy_model().save_pretrained(str(snapshot))
    gpt2_tokenizer().save_pretrained(str(snapshot))
    (hf / "hub" / "models--gpt2" / "refs").mkdir(parents=True)
    (hf / "hub" / "models--gpt2" / "refs" / "main").write_text(ZEROS)
    for i, (folder, d) in enumerate(GEN_FOLDERS.values()):
        for layer in range(2):
            save_tdb_autoencoder(
                ae_root / f"sparse-autoencoder/gpt2-small/{folder}/autoencoders/{layer}.pt",
                _generated_ae(d, 100 * i + layer),
            )
    data.mkdir()
    _write_stored_records(data)
    variables = {
        "NEURON_EXPLAINER_HOME": str(home),
        "HF_HOME": str(hf),
        "HF_HUB_CACHE": str(hf / "hub"),
        "NEURON_EXPLAINER_AUTOENCODER_ROOT": str(ae_root),
        "DATA": str(data),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in variables.items():
            mp.setenv(k, v)
        yield variables


@pytest.fixture(scope="module")
def model(env: dict[str, str]) -> LoadedModel:
    """tiny-gpt2 in this process; loading it also writes the toy checkpoint and autoencoder files the
    servers then read (so they do not race to build them)."""
    return load_model(M, device="cpu", mlp_autoencoder="ae-tiny-mlp", attn_autoencoder="ae-tiny-attn")


SEED_VARIANTS: dict[str, list[str]] = {
    "gpt2-small": ["--model_name", "gpt2-small"],
    "gpt2-small+mlp": ["--model_name", "gpt2-small", "--mlp_autoencoder_name", "ae-mlp-post-act-v4"],
    "gpt2-small+attn": ["--model_name", "gpt2-small", "--attn_autoencoder_name", "ae-resid-delta-attn-v4"],
    "gpt2-small+both": [
        "--model_name",
        "gpt2-small",
        "--mlp_autoencoder_name",
        "ae-resid-delta-mlp-v4",
        "--attn_autoencoder_name",
        "ae-resid-delta-attn-v4",
    ],
    "tiny+mlp": ["--model_name", M, "--mlp_autoencoder_name", "ae-tiny-mlp", "--cuda_memory_debugging", "True"],
    "tiny+attn": ["--model_name", M, "--attn_autoencoder_name", "ae-tiny-attn"],
}


@pytest.fixture(scope="module")
def servers(env: dict[str, str], model: LoadedModel) -> Iterator[dict[str, ServerProcess]]:
    data = ["--data_root", env["DATA"]]
    specs = {
        "live": ["--model_name", M, "--mlp_autoencoder_name", "ae-tiny-mlp", "--attn_autoencoder_name", "ae-tiny-attn"],
        "no_model": ["--model_name", M, "--run_model", "False"],
        **SEED_VARIANTS,
    }
    # One seed command runs as the real script in its own process (the command line as users type it);
    # the rest share this process, which has torch and transformer-lens imported already.
    procs = {
        name: (ServerProcess if name == "gpt2-small+both" else InProcessServer)([*args, *data], env=env)
        for name, args in specs.items()
    }
    try:
        with ThreadPoolExecutor(len(procs)) as pool:
            for f in [pool.submit(p.start) for p in procs.values()]:
                f.result()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


@pytest.fixture(scope="module")
def live(servers: dict[str, ServerProcess]) -> ServerProcess:
    return servers["live"]


def _direct(model: LoadedModel, text: str, names: Sequence[str]) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(torch.tensor([model.to_tokens(text)]), names_filter=list(names))
    return {n: cache[n][0] for n in names}


def _data(body: dict[str, Any]) -> dict[str, Any]:
    assert not body.get("errors"), body["errors"]
    data: dict[str, Any] = body["data"]
    return data


def _forward_count(server: ServerProcess) -> int:
    count: int = _data(server.query("{ engineStats { forwardCount } }"))["engineStats"]["forwardCount"]
    return count


def _close(values: Sequence[float], expected: torch.Tensor, atol: float = 1e-5) -> bool:
    return torch.allclose(torch.tensor(values, dtype=torch.float32), expected.float(), atol=atol)


# ---- live values equal direct transformer-lens computations ---------------------------------------
def test_live_values_equal_direct_computation(live: ServerProcess, model: LoadedModel) -> None:
    query = """query($p: String!) {
      neuron: node(id: "tiny-gpt2/mlp_neuron/1/37") { id activations(prompt: $p) {
        tokens activations normalizedActivations attentionRows provenance { source dataset model computedAt } } }
      mlpLatent: node(id: "tiny-gpt2/ae-tiny-mlp/0/11") { activations(prompt: $p) { activations } }
      attnLatent: node(id: "tiny-gpt2/ae-tiny-attn/1/200") { activations(prompt: $p) { activations } }
      head: node(id: "tiny-gpt2/attention_head/1/3") { activations(prompt: $p) {
        activations attentionRows normalizedActivations } }
    }"""
    data = _data(live.query(query, {"p": PROMPT}))
    cache = _direct(
        model,
        PROMPT,
        [
            hook_names.mlp_post(0),
            hook_names.mlp_post(1),
            hook_names.attn_out(1),
            hook_names.attn_pattern(1),
            hook_names.attn_v(1),
        ],
    )
    neuron = data["neuron"]["activations"]
    assert neuron["tokens"] == model.to_str_tokens(model.to_tokens(PROMPT)) and len(neuron["tokens"]) == 12
    assert _close(neuron["activations"], cache[hook_names.mlp_post(1)][:, 37], atol=1e-6)
    assert neuron["attentionRows"] is None
    top = max(neuron["activations"])  # no dataset holds this neuron: the prompt's own max sets the scale
    assert neuron["normalizedActivations"] == pytest.approx([max(x / (top - 1e-5), 0) for x in neuron["activations"]])
    prov = neuron["provenance"]
    assert prov["source"] == "LIVE" and prov["model"] == M and prov["dataset"] is None
    assert (
        abs(
            (
                datetime.now(datetime.fromisoformat(prov["computedAt"]).tzinfo)
                - datetime.fromisoformat(prov["computedAt"])
            ).total_seconds()
        )
        < 60
    )

    assert model.mlp_autoencoder is not None and model.attn_autoencoder is not None
    mlp_latents = model.mlp_autoencoder.layers[0].encode(cache[hook_names.mlp_post(0)])  # [pos, 512]
    attn_latents = model.attn_autoencoder.layers[1].encode(cache[hook_names.attn_out(1)])  # [pos, 256]
    assert _close(data["mlpLatent"]["activations"]["activations"], mlp_latents[:, 11])
    assert _close(data["attnLatent"]["activations"]["activations"], attn_latents[:, 200])

    pattern, v = cache[hook_names.attn_pattern(1)], cache[hook_names.attn_v(1)]
    w_o = model.bridge.blocks[1].attn.W_O[3].detach()  # [d_head, d_model]
    rows = data["head"]["activations"]["attentionRows"]
    assert [len(r) for r in rows] == list(range(1, 13))
    for i, row in enumerate(rows):
        expected = pattern[3, i, : i + 1] * torch.linalg.vector_norm(v[: i + 1, 3] @ w_o, dim=-1)
        assert _close(row, expected, atol=1e-6)
    assert data["head"]["activations"]["activations"] == [x for row in rows for x in row]


def test_normalization_against_the_stored_record(live: ServerProcess, model: LoadedModel) -> None:
    """A stored node normalizes as TDB's /derived_scalars did: clamp(x, 0) / the record's maxActivation;
    a stored head's top sequences join the pool its max is taken over."""
    query = """query($p: String!) {
      n: node(id: "tiny-gpt2/mlp_neuron/1/40") { maxActivation activations(prompt: $p) {
        activations normalizedActivations } }
      h: node(id: "tiny-gpt2/attention_head/1/2") { activations(prompt: $p) { activations normalizedActivations } }
    }"""
    data = _data(live.query(query, {"p": PROMPT}))
    assert data["n"]["maxActivation"] == 0.5
    values = data["n"]["activations"]["activations"]
    assert data["n"]["activations"]["normalizedActivations"] == pytest.approx([max(x, 0) / 0.5 for x in values])
    flat = data["h"]["activations"]["activations"]
    assert max(flat) < 10.0  # the stored 10.0 is the pool's max
    assert data["h"]["activations"]["normalizedActivations"] == pytest.approx([x / (10.0 - 1e-5) for x in flat])


def test_prompt_tokens_loss_logits_and_top_nodes(live: ServerProcess, model: LoadedModel) -> None:
    query = """query($p: String!) { prompt(text: $p) {
      text tokens tokenIds loss
      logitDiff(targetTokens: [" the", " a"], distractorTokens: [" dog"])
      topLogits(k: 5) { tokenId token logit probability }
      byAct: topNodes(kind: MLP_NEURON, k: 5) { node { id layer index } token value }
      byWrite: topNodes(kind: MLP_NEURON, k: 3, by: WRITE_NORM, token: 4) { node { id } token value }
      byGrad: topNodes(kind: MLP_NEURON, k: 3, by: ACT_TIMES_GRAD, targetTokens: [" the", " a"],
                       distractorTokens: [" dog"]) { node { id } token value }
      heads: topNodes(kind: ATTENTION_HEAD, k: 2) { node { __typename id } token value }
      latents: topNodes(kind: ATTENTION_AUTOENCODER_LATENT, k: 2) { node { ... on AutoencoderLatent {
        autoencoder } id } value }
    } }"""
    p = _data(live.query(query, {"p": PROMPT}))["prompt"]
    ids = model.to_tokens(PROMPT)
    assert p["text"] == PROMPT and p["tokenIds"] == ids and p["tokens"] == model.to_str_tokens(ids)
    tokens = torch.tensor([ids])
    with torch.no_grad():
        logits = model.bridge(tokens)[0]  # [pos, vocab]
    assert p["loss"] == pytest.approx(float(F.cross_entropy(logits[:-1], tokens[0, 1:])), abs=1e-5)
    the, a, dog = (model.to_tokens(t)[0] for t in (" the", " a", " dog"))
    last = logits[-1]
    assert p["logitDiff"] == pytest.approx(float((last[the] + last[a]) / 2 - last[dog]), abs=1e-5)
    values, top_ids = torch.topk(last, 5)
    assert [t["tokenId"] for t in p["topLogits"]] == top_ids.tolist()
    assert _close([t["logit"] for t in p["topLogits"]], values)
    assert p["topLogits"][0]["probability"] == pytest.approx(float(torch.softmax(last, -1)[top_ids[0]]), rel=1e-4)

    cache = _direct(model, PROMPT, [hook_names.mlp_post(0), hook_names.mlp_post(1)])
    acts = torch.stack([cache[hook_names.mlp_post(layer)] for layer in range(2)])  # [layer, pos, d_mlp]
    best, flat = torch.topk(acts.flatten(), 5)
    layers, positions, units = torch.unravel_index(flat, acts.shape)
    assert [(n["node"]["layer"], n["token"], n["node"]["index"]) for n in p["byAct"]] == list(
        zip(layers.tolist(), positions.tolist(), units.tolist(), strict=True)
    )
    assert _close([n["value"] for n in p["byAct"]], best)
    write = acts[:, 4] * torch.stack([block.mlp.W_out.detach().norm(dim=-1) for block in model.bridge.blocks])
    best_write, flat_write = torch.topk(write.flatten(), 3)
    assert [n["node"]["id"] for n in p["byWrite"]] == [
        f"{M}/mlp_neuron/{i // 256}/{i % 256}" for i in flat_write.tolist()
    ]
    assert all(n["token"] == 4 for n in p["byWrite"]) and _close([n["value"] for n in p["byWrite"]], best_write)

    kept: list[torch.Tensor] = []

    def keep(x: torch.Tensor, hook: Any) -> torch.Tensor:
        kept.append(x)
        return x

    # ACT_TIMES_GRAD differentiates with the final LayerNorm's scale detached, as TDB (issue 15's new default).
    hooks = [(hook_names.mlp_post(layer), keep) for layer in range(2)]
    hooks.append((hook_names.final_norm_scale(), lambda x, hook: x.detach()))
    with torch.enable_grad():
        out = model.bridge.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1]
        grads = torch.autograd.grad((out[the] + out[a]) / 2 - out[dog], kept)
    scores = torch.stack([(x[0] * g[0]).detach() for x, g in zip(kept, grads, strict=True)])
    best_grad, flat_grad = torch.topk(scores.flatten(), 3)
    assert [(n["node"]["id"], n["token"]) for n in p["byGrad"]] == [
        (f"{M}/mlp_neuron/{i // (12 * 256)}/{i % 256}", (i // 256) % 12) for i in flat_grad.tolist()
    ]
    assert _close([n["value"] for n in p["byGrad"]], best_grad, atol=1e-6)
    assert {n["node"]["__typename"] for n in p["heads"]} == {"AttentionHead"}
    assert p["heads"][0]["value"] >= p["heads"][1]["value"] > 0
    assert [n["node"]["autoencoder"] for n in p["latents"]] == ["ae-tiny-attn"] * 2


def test_inserted_autoencoders_leave_logits_unchanged(live: ServerProcess, model: LoadedModel) -> None:
    """Reading every layer's latents inserts both autoencoders at every layer; the logits stay put."""
    latents = " ".join(
        f'{ae.replace("-", "_")}_{layer}: activations(nodeId: "{M}/{ae}/{layer}/0") {{ activations }}'
        for ae in ("ae-tiny-mlp", "ae-tiny-attn")
        for layer in range(2)
    )
    query = f"query($p: String!) {{ prompt(text: $p) {{ {latents} topLogits(k: 20) {{ tokenId logit }} }} }}"
    p = _data(live.query(query, {"p": PROMPT}))["prompt"]
    with torch.no_grad():
        last = model.bridge(torch.tensor([model.to_tokens(PROMPT)]))[0, -1]
    values, ids = torch.topk(last, 20)
    assert [t["tokenId"] for t in p["topLogits"]] == ids.tolist()
    assert _close([t["logit"] for t in p["topLogits"]], values, atol=1e-5)


def test_ablations_match_direct_hooks(live: ServerProcess, model: LoadedModel) -> None:
    query = """query($p: String!, $ablations: [AblationInput!]) { prompt(text: $p, ablations: $ablations) {
      neuron: activations(nodeId: "tiny-gpt2/mlp_neuron/1/37") { activations }
      latent: activations(nodeId: "tiny-gpt2/ae-tiny-attn/1/9") { activations }
    } }"""
    ablations = [
        {"nodeId": f"{M}/mlp_neuron/0/7", "tokenIndices": [1, 2], "value": 3.0},
        {"nodeId": f"{M}/attention_head/1/2", "tokenIndices": [5]},  # value defaults to 0
    ]
    plain = _data(live.query(query, {"p": PROMPT}))["prompt"]
    ablated = _data(live.query(query, {"p": PROMPT, "ablations": ablations}))["prompt"]

    def set_neuron(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, [1, 2], 7] = 3.0
        return x

    def flatten_head(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        x[:, 2, [5], :] = 0.0
        return x

    kept: dict[str, torch.Tensor] = {}

    def keeper(name: str) -> Any:
        def keep(x: torch.Tensor, hook: Any) -> None:
            kept[name] = x.detach().clone()

        return keep

    with torch.no_grad():
        model.bridge.run_with_hooks(
            torch.tensor([model.to_tokens(PROMPT)]),
            fwd_hooks=[
                (hook_names.mlp_post(0), set_neuron),
                (hook_names.attn_pattern(1), flatten_head),
                (hook_names.mlp_post(1), keeper(hook_names.mlp_post(1))),
                (hook_names.attn_out(1), keeper(hook_names.attn_out(1))),
            ],
        )
    assert model.attn_autoencoder is not None
    assert _close(ablated["neuron"]["activations"], kept[hook_names.mlp_post(1)][0, :, 37], atol=1e-6)
    latent = model.attn_autoencoder.layers[1].encode(kept[hook_names.attn_out(1)][0])[:, 9]
    assert _close(ablated["latent"]["activations"], latent)
    assert not _close(ablated["neuron"]["activations"], torch.tensor(plain["neuron"]["activations"]), atol=1e-4)
    assert plain["neuron"]["activations"][:1] == pytest.approx(ablated["neuron"]["activations"][:1], abs=1e-6)


def test_fifty_nodes_on_one_prompt_run_one_forward(live: ServerProcess, model: LoadedModel) -> None:
    prompt = "Fifty nodes, one forward pass"
    fields = " ".join(
        f'n{i}: node(id: "{M}/mlp_neuron/{i % 2}/{i}") {{ id activations(prompt: $p) {{ activations }} }}'
        for i in range(40)
    )
    fields += " ".join(
        f' h{i}: node(id: "{M}/attention_head/{i % 2}/{i % 4}") {{ activations(prompt: $p) {{ attentionRows }} }}'
        for i in range(5)
    )
    fields += " ".join(
        f' l{i}: node(id: "{M}/ae-tiny-mlp/{i % 2}/{i}") {{ activations(prompt: $p) {{ activations }} }}'
        for i in range(5)
    )
    # ...and, at other depths, the same prompt's logits and a ranked node's activations.
    fields += """ prompt(text: $p) { topLogits(k: 2) { token } topNodes(kind: MLP_NEURON, k: 2) {
      node { activations(prompt: $p) { activations } } } }"""
    before = _forward_count(live)
    data = _data(live.query(f"query($p: String!) {{ {fields} }}", {"p": prompt}))
    assert _forward_count(live) == before + 1
    cache = _direct(model, prompt, [hook_names.mlp_post(1)])
    assert _close(data["n1"]["activations"]["activations"], cache[hook_names.mlp_post(1)][:, 1], atol=1e-6)
    assert len(data["h4"]["activations"]["attentionRows"]) == len(model.to_tokens(prompt))
    assert len([k for k in data if k[0] in "nhl"]) == 50


def test_records_no_dataset_has_are_computed_live_then_stored(live: ServerProcess, model: LoadedModel) -> None:
    """AUTO with no dataset: the node's layer is collated over the reference corpus on the engine's
    thread and written back; the next read is a stored one from the same dataset."""
    from neuron_explainer.collation import reference_corpus

    query = """{ a: node(id: "tiny-gpt2/mlp_neuron/0/5") { maxActivation topActivations(first: 20) {
          tokens activations provenance { source dataset model computedAt } } }
        b: node(id: "tiny-gpt2/mlp_neuron/0/6") { topActivations(first: 1) { provenance { source dataset } } } }"""
    first = _data(live.query(query, timeout=300))
    again = _data(live.query(query))
    records = first["a"]["topActivations"]
    prov = records[0]["provenance"]
    assert prov["source"] == "LIVE" and prov["model"] == M and prov["dataset"] and prov["computedAt"]
    assert first["b"]["topActivations"][0]["provenance"] == {"source": "LIVE", "dataset": prov["dataset"]}
    stored = again["a"]["topActivations"][0]["provenance"]
    assert stored["source"] == "STORED" and stored["dataset"] == prov["dataset"] and stored["computedAt"] is None
    assert len(records) == 20 and again["a"]["topActivations"][0]["activations"] == records[0]["activations"]
    corpus = reference_corpus(model)
    windows = torch.tensor(corpus.windows(0, corpus.n_windows), dtype=torch.long)  # [window, 64]
    with torch.no_grad():
        _, cache = model.bridge.run_with_cache(windows, names_filter=[hook_names.mlp_post(0)])
    values = cache[hook_names.mlp_post(0)][:, :, 5]  # [window, pos]
    best = int(values.max(dim=1).values.argmax())
    assert first["a"]["maxActivation"] == pytest.approx(float(values.max()), abs=1e-4)
    assert records[0]["tokens"] == model.to_str_tokens(windows[best].tolist())
    assert _close(records[0]["activations"], values[best], atol=1e-4)


# ---- bad input: typed errors, other fields still resolve -------------------------------------------
def test_bad_inputs_are_typed_errors_and_siblings_resolve(live: ServerProcess) -> None:
    long_prompt = " word" * 200  # tiny-gpt2 reads 128 tokens
    body = live.query(
        """query($long: String!) {
          modelInfo { modelName }
          empty: prompt(text: "") { tokens }
          long: prompt(text: $long) { tokens }
          node(id: "tiny-gpt2/mlp_neuron/0/1") { id activations(prompt: "") { activations } }
          target: prompt(text: "Hello there") { tokens topNodes(kind: MLP_NEURON, by: ACT_TIMES_GRAD,
            targetTokens: [" Paris is"]) { value } logitDiff(targetTokens: [""]) }
          noTarget: prompt(text: "Hello there") { topNodes(kind: MLP_NEURON, by: ACT_TIMES_GRAD) { value } }
          badLayer: prompt(text: "Hello", ablations: [{nodeId: "tiny-gpt2/mlp_neuron/5/0"}]) { tokens }
          badToken: prompt(text: "Hello", ablations: [{nodeId: "tiny-gpt2/mlp_neuron/0/0", tokenIndices: [3]}]) {
            tokens }
          badLatent: prompt(text: "Hello", ablations: [{nodeId: "tiny-gpt2/ae-tiny-mlp/0/512"}]) { tokens }
          other: prompt(text: "Hello") { activations(nodeId: "gpt2-small/mlp_neuron/0/0") { activations } }
        }""",
        {"long": long_prompt},
    )
    data = body["data"]
    assert data["modelInfo"] == {"modelName": M}
    assert data["node"] == {"id": "tiny-gpt2/mlp_neuron/0/1", "activations": None}
    assert data["target"]["tokens"] == ["Hello", " there"]
    assert data["target"]["topNodes"] is None and data["target"]["logitDiff"] is None
    for name in ("empty", "long", "badLayer", "badToken", "badLatent"):
        assert data[name] is None, name
    assert data["noTarget"]["topNodes"] is None and data["other"]["activations"] is None
    by_path = {tuple(e["path"]): e for e in body["errors"]}
    assert set(by_path) == {
        ("empty",),
        ("long",),
        ("node", "activations"),
        ("target", "topNodes"),
        ("target", "logitDiff"),
        ("noTarget", "topNodes"),
        ("badLayer",),
        ("badToken",),
        ("badLatent",),
        ("other", "activations"),
    }
    assert {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    assert "empty" in by_path[("empty",)]["message"]
    assert by_path[("long",)]["extensions"]["limit"] == 128 and by_path[("long",)]["extensions"]["tokens"] == 200
    assert "exactly one token" in by_path[("target", "topNodes")]["message"]
    assert by_path[("target", "topNodes")]["extensions"]["token"] == " Paris is"
    assert "layer 5 out of range" in by_path[("badLayer",)]["message"]
    assert "token 3" in by_path[("badToken",)]["message"]
    assert by_path[("badLatent",)]["extensions"]["limit"] == 512
    assert "gpt2-small" in by_path[("other", "activations")]["message"]


def test_without_a_model_live_fields_say_model_not_loaded(servers: dict[str, ServerProcess]) -> None:
    server = servers["no_model"]
    body = server.query(
        """{ modelInfo { modelName running nLayers hasMlpAutoencoder } engineStats { forwardCount }
             node(id: "tiny-gpt2/mlp_neuron/0/1") { id activations(prompt: "Hello") { activations } }
             prompt(text: "Hello") { tokens } }"""
    )
    assert body["data"] == {
        "modelInfo": {"modelName": M, "running": False, "nLayers": 2, "hasMlpAutoencoder": False},
        "engineStats": None,
        "node": {"id": "tiny-gpt2/mlp_neuron/0/1", "activations": None},
        "prompt": None,
    }
    assert error_codes(body) == ["MODEL_NOT_LOADED", "MODEL_NOT_LOADED"]
    assert "--run_model False" in body["errors"][0]["message"]


# ---- the seed's command lines -----------------------------------------------------------------------
def _generated_latents(env: dict[str, str], ae: str, layer: int, x: torch.Tensor) -> torch.Tensor:
    folder = GEN_FOLDERS[ae][0]
    path = Path(env["NEURON_EXPLAINER_AUTOENCODER_ROOT"]) / f"sparse-autoencoder/gpt2-small/{folder}/autoencoders"
    return load_tdb_autoencoder(path / f"{layer}.pt").encode(x)


@pytest.mark.parametrize("variant", list(SEED_VARIANTS))
def test_seed_commands_start_the_server(
    servers: dict[str, ServerProcess], variant: str, model: LoadedModel, env: dict[str, str]
) -> None:
    server = servers[variant]
    args = SEED_VARIANTS[variant]
    mlp_ae = args[args.index("--mlp_autoencoder_name") + 1] if "--mlp_autoencoder_name" in args else None
    attn_ae = args[args.index("--attn_autoencoder_name") + 1] if "--attn_autoencoder_name" in args else None
    name = args[1]
    info = _data(
        server.query(
            """{ modelInfo { modelName nLayers hasMlpAutoencoder mlpAutoencoderName hasAttentionAutoencoder
             attentionAutoencoderName running dModel dMlp nHeads nCtx mlpAutoencoderLatents
             attentionAutoencoderLatents } }"""
        )
    )["modelInfo"]
    generated = name == "gpt2-small"
    latents = GEN_LATENTS - GEN_DEAD if generated else None
    assert info == {
        "modelName": name,
        "nLayers": 2,
        "hasMlpAutoencoder": mlp_ae is not None,
        "mlpAutoencoderName": mlp_ae,
        "hasAttentionAutoencoder": attn_ae is not None,
        "attentionAutoencoderName": attn_ae,
        "running": True,
        "dModel": 64,
        "dMlp": 256,
        "nHeads": 4,
        "nCtx": 128,
        "mlpAutoencoderLatents": (latents or 512) if mlp_ae else None,
        "attentionAutoencoderLatents": (latents or 256) if attn_ae else None,
    }
    # Bounds come from the loaded model (2 layers, not gpt2-small's 12) and its loaded latents.
    body = server.query(f'{{ node(id: "{name}/mlp_neuron/2/0") {{ id }} }}')
    assert error_codes(body) == ["BAD_USER_INPUT"] and "layers 0..1" in body["errors"][0]["message"]
    cache = _direct(model, PROMPT, [hook_names.mlp_post(1), hook_names.mlp_out(1), hook_names.attn_out(1)])
    checks = [(f"{name}/mlp_neuron/1/37", cache[hook_names.mlp_post(1)][:, 37])]
    for ae in (mlp_ae, attn_ae):
        if ae is None:
            continue
        if generated:
            location = {
                "ae-mlp-post-act-v4": hook_names.mlp_post(1),
                "ae-resid-delta-mlp-v4": hook_names.mlp_out(1),
                "ae-resid-delta-attn-v4": hook_names.attn_out(1),
            }[ae]
            every = _generated_latents(env, ae, 1, cache[location])  # [pos, latents]
            too_far = server.query(f'{{ node(id: "{name}/{ae}/1/{GEN_LATENTS - GEN_DEAD}") {{ id }} }}')
            assert error_codes(too_far) == ["BAD_USER_INPUT"], too_far
        else:
            tiny = model.mlp_autoencoder if ae == "ae-tiny-mlp" else model.attn_autoencoder
            assert tiny is not None
            location = hook_names.mlp_post(1) if ae == "ae-tiny-mlp" else hook_names.attn_out(1)
            every = tiny.layers[1].encode(cache[location])  # [pos, latents]
        index = int(every.max(dim=0).values.argmax())  # the latent most active on the prompt
        checks.append((f"{name}/{ae}/1/{index}", every[:, index]))
    fields = " ".join(
        f'n{i}: node(id: "{node}") {{ activations(prompt: $p) {{ activations }} }}'
        for i, (node, _) in enumerate(checks)
    )
    data = _data(server.query(f"query($p: String!) {{ {fields} }}", {"p": PROMPT}))
    for i, (node, expected) in enumerate(checks):
        assert _close(data[f"n{i}"]["activations"]["activations"], expected), node
    assert all(float(e.max()) > 0 for _, e in checks[1:])
    if "--cuda_memory_debugging" in args:  # on a machine without CUDA the route says so instead of failing
        response = httpx.get(f"{server.url}/dump_memory_snapshot", timeout=10)
        assert response.status_code == 200 and "CUDA is not available" in response.json()


def test_unknown_autoencoder_stops_the_server_with_its_name(env: dict[str, str]) -> None:
    server = ServerProcess(["--model_name", "gpt2-small", "--mlp_autoencoder_name", "ae-nope"], env=env)
    with pytest.raises(RuntimeError, match="ae-nope") as info:
        server.start()
    assert "known: ae-mlp-post-act-v1" in str(info.value)
