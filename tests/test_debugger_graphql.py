"""The debugger over GraphQL, in process (the app with its real lifespan, engine thread and model; the
process boundary proves nothing here): the contract queries on the embedded default's configuration
against direct computations, one forward and one backward per query (counted three ways), the
cross-request pass cache, patching, the two-condition view, and every bad input as BAD_USER_INPUT
naming its argument while the other fields — and the other clients of the same batch — still resolve.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import httpx
import pytest
import pytest_asyncio
import torch

from neuron_explainer.activation_server.main import build_app
from neuron_explainer.activation_server.services import ServerState
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.settings import ServerSettings
from tests import gpt2_reference as ref

M = "tiny-gpt2"
TEXT = "When Mary and John went to the store, John gave a drink to"
OTHER = "When Anna and Peter went to the beach, Peter gave a towel to"
TARGET = {"targetTokens": [" Mary"], "distractorTokens": [" John"]}
ROW = "kind node { id } token keyToken activation writeNorm actTimesGrad directEffect"
TOL = 1e-5


@contextlib.asynccontextmanager
async def in_process(settings: ServerSettings) -> AsyncIterator[tuple[httpx.AsyncClient, ServerState]]:
    """The whole app with its lifespan, reached through httpx's ASGI transport once its services are open."""
    app = build_app(settings)
    lifecycle = app.state.lifecycle
    async with app.router.lifespan_context(app):
        deadline = asyncio.get_running_loop().time() + 300
        while not lifecycle.ready:
            assert lifecycle.failure is None, lifecycle.failure
            assert asyncio.get_running_loop().time() < deadline, "the server did not become ready"
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://debugger.test", timeout=120) as client:
            yield client, lifecycle.state


@pytest_asyncio.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[httpx.AsyncClient, ServerState]]:
    """The embedded default's model and autoencoders (``scripts/dev.sh serve``), without its demo dataset."""
    base = tmp_path_factory.mktemp("debugger")
    (base / "data").mkdir()
    settings = ServerSettings(
        model_name=M,
        mlp_autoencoder_name="ae-tiny-mlp",
        attn_autoencoder_name="ae-tiny-attn",
        data_root=str(base / "data"),
        persist_jobs=False,
        max_batch_wait_ms=5.0,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_EXPLAINER_HOME", str(base / "home"))
        async with in_process(settings) as running:
            yield running


@pytest.fixture(scope="module")
def weights(server: tuple[httpx.AsyncClient, ServerState]) -> ref.Weights:
    model = server[1].services.model
    assert model is not None
    return ref.Weights.load(model.checkpoint)


def _model(server: tuple[httpx.AsyncClient, ServerState]) -> LoadedModel:
    model = server[1].services.model
    assert model is not None
    return model


async def _ask(client: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    """POST a query (``<ROW>`` stands for a node-table row's fields, ``<M>`` for the model name)."""
    query = query.replace("<ROW>", ROW).replace("<M>", M)
    response = await client.post("/graphql", json={"query": query, "variables": variables})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _aes(model: LoadedModel) -> dict[str, ref.InsertedAutoencoder]:
    return {ae.location: ref.InsertedAutoencoder(ae.location, ae.layers) for ae in model.autoencoders.values()}


def _ref_value(theirs: dict[str, dict[str, torch.Tensor]], row: dict[str, Any], column: str) -> float:
    kind = row["kind"]
    if kind == "EMBEDDING":
        return float(theirs["embedding"][column][row["token"]])
    _, _, layer, index = row["node"]["id"].split("/")
    layer_i, index_i = int(layer), int(index)
    if kind == "ATTENTION_HEAD":
        return float(theirs["head"][column][layer_i, index_i, row["token"], row["keyToken"]])
    name = {"MLP_NEURON": "mlp", "MLP_AUTOENCODER_LATENT": "mlp_latent", "ATTENTION_AUTOENCODER_LATENT": "attn_latent"}
    return float(theirs[name[kind]][column][layer_i, row["token"], index_i])


_COLUMNS = {
    "activation": "activation",
    "writeNorm": "write_norm",
    "actTimesGrad": "act_times_grad",
    "directEffect": "direct_effect",
}


def _check_rows(rows: list[dict[str, Any]], theirs: dict[str, dict[str, torch.Tensor]]) -> None:
    for graphql_name, column in _COLUMNS.items():
        scale = max(float(t[column].abs().max()) for t in theirs.values()) or 1.0
        for row in rows:
            assert isinstance(row[graphql_name], float)
            assert abs(row[graphql_name] - _ref_value(theirs, row, column)) <= TOL * scale, (row, column)


CONTRACT = """
query($text: String!, $target: TargetInput!, $head: ID!, $neuron: ID!) {
  prompt(text: $text, target: $target) {
    tokens
    nodeTable(k: 8) { <ROW> }
    each: nodeTable(k: 3, perKind: true, kinds: [EMBEDDING, MLP_NEURON, ATTENTION_HEAD, MLP_AUTOENCODER_LATENT,
      ATTENTION_AUTOENCODER_LATENT]) { <ROW> }
    tokenAttribution
    attentionPattern(nodeId: $head)
    topLogits(k: 5) { tokenId logit }
    targetValue
  }
  node(id: $neuron) { outputTokens(k: 5) { token value } }
}
"""


async def test_contract_queries_equal_direct_computations(
    server: tuple[httpx.AsyncClient, ServerState], weights: ref.Weights
) -> None:
    client, _ = server
    model = _model(server)
    body = await _ask(
        client, CONTRACT, text=TEXT, target=TARGET, head=f"{M}/attention_head/1/2", neuron=f"{M}/mlp_neuron/1/40"
    )
    assert "errors" not in body, body
    prompt = body["data"]["prompt"]
    tokens = model.to_tokens(TEXT)
    mary, john = model.to_tokens(" Mary")[0], model.to_tokens(" John")[0]
    scalar, theirs = ref.columns(weights, tokens, ref.Trace(loss=("LOGIT_DIFF", [mary], [john])), _aes(model))
    assert prompt["targetValue"] == pytest.approx(float(scalar), abs=1e-5)
    rows = prompt["nodeTable"]  # TDB's joint ranking: whichever default kinds hold the extremes
    assert {r["kind"] for r in rows} <= {"EMBEDDING", "MLP_NEURON", "ATTENTION_HEAD"} and len(rows) >= 16
    _check_rows(rows, theirs)
    each = prompt["each"]  # k per kind: every kind asked shows up
    assert {r["kind"] for r in each} == {
        "EMBEDDING",
        "MLP_NEURON",
        "ATTENTION_HEAD",
        "MLP_AUTOENCODER_LATENT",
        "ATTENTION_AUTOENCODER_LATENT",
    }
    _check_rows(each, theirs)
    attribution = torch.tensor(prompt["tokenAttribution"])
    want = theirs["embedding"]["act_times_grad"]
    assert float((attribution.double() - want).abs().max()) <= TOL * float(want.abs().max())
    p = ref.run(weights, tokens, autoencoders=_aes(model), all_logits=True)
    pattern = p.pattern[1][2].detach()
    assert [len(r) for r in prompt["attentionPattern"]] == list(range(1, len(tokens) + 1))
    for q, row in enumerate(prompt["attentionPattern"]):
        assert row == pytest.approx(pattern[q, : q + 1].tolist(), abs=1e-6)
        assert sum(row) == pytest.approx(1.0, abs=1e-5)
    assert p.logits is not None
    assert [t["tokenId"] for t in prompt["topLogits"]] == torch.topk(p.logits[-1], 5).indices.tolist()
    write = weights.layers[1]["mlp.c_proj.weight"][40] * weights.ln_f[0]
    lens = weights.wte @ write
    lens = lens - lens.mean()
    top = body["data"]["node"]["outputTokens"]
    assert [t["value"] for t in top] == pytest.approx(torch.topk(lens, 5).values.tolist(), rel=1e-5)


ONE_PASS = """
query($text: String!, $target: TargetInput!, $head: ID!, $neuron: ID!) {
  prompt(text: $text, target: $target) {
    nodeTable(k: 20) { <ROW> }
    tokenAttribution
    attentionPattern(nodeId: $head)
    topLogits(k: 3) { token }
    componentSums { token embedding mlp attentionFrom attentionTo }
    tokenPairAttribution(k: 3) { token keyToken value }
    targetValue
    activations(nodeId: $neuron) { activations }
    topNodes(kind: ATTENTION_HEAD, k: 3) { node { id } token keyToken value }
  }
}
"""


@contextlib.contextmanager
def counting(model: LoadedModel) -> Any:
    """Forwards (the embedding module runs once per pass) and backwards (autograd.grad calls) as they happen."""
    counts = {"forward": 0, "backward": 0}
    handle = model.bridge.embed.register_forward_hook(lambda *_: counts.__setitem__("forward", counts["forward"] + 1))
    real = torch.autograd.grad

    def grad(*args: Any, **kwargs: Any) -> Any:
        counts["backward"] += 1
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.autograd, "grad", grad)
        try:
            yield counts
        finally:
            handle.remove()


async def _engine_counts(client: httpx.AsyncClient) -> tuple[int, int]:
    stats = (await _ask(client, "{ engineStats { forwardCount backwardCount } }"))["data"]["engineStats"]
    return stats["forwardCount"], stats["backwardCount"]


async def test_one_query_runs_one_forward_and_one_backward_and_the_next_click_none(
    server: tuple[httpx.AsyncClient, ServerState],
) -> None:
    client, state = server
    model = _model(server)
    text = "The quick brown fox jumps over the lazy dog because it was"
    target = {"targetTokens": [" tired"]}
    before = await _engine_counts(client)
    with counting(model) as counts:
        first = await _ask(
            client, ONE_PASS, text=text, target=target, head=f"{M}/attention_head/0/1", neuron=f"{M}/mlp_neuron/0/3"
        )
    assert "errors" not in first, first
    assert counts == {"forward": 1, "backward": 1}
    after = await _engine_counts(client)
    assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    # Another node on the same prompt and target: answered from the pass cache, no pass at all.
    with counting(model) as counts:
        second = await _ask(
            client, ONE_PASS, text=text, target=target, head=f"{M}/attention_head/1/3", neuron=f"{M}/mlp_neuron/1/9"
        )
    assert "errors" not in second, second
    assert counts == {"forward": 0, "backward": 0} and await _engine_counts(client) == after
    assert second["data"]["prompt"]["nodeTable"] == first["data"]["prompt"]["nodeTable"]
    assert second["data"]["prompt"]["attentionPattern"] != first["data"]["prompt"]["attentionPattern"]
    assert state.services.passes is not None and state.services.passes.hits > 0
    heads = first["data"]["prompt"]["topNodes"]
    assert all(h["keyToken"] is not None and h["keyToken"] <= h["token"] for h in heads)


async def test_tracing_a_head_reads_logits_at_its_token_and_matches_autograd(
    server: tuple[httpx.AsyncClient, ServerState], weights: ref.Weights
) -> None:
    client, _ = server
    model = _model(server)
    tokens = model.to_tokens(TEXT)
    q = len(tokens) - 4
    query = """query($text: String!, $target: TargetInput!) { prompt(text: $text, target: $target) {
      nodeTable(k: 6) { <ROW> } tokenAttribution targetValue topLogits(k: 4) { tokenId } } }"""
    for path, reference in (("K", "K"), ("V", "V")):
        target = {**TARGET, "node": f"{M}/attention_head/1/0", "token": q, "keyToken": 2, "attentionPath": path}
        body = await _ask(client, query, text=TEXT, target=target)
        assert "errors" not in body, body
        mary, john = model.to_tokens(" Mary")[0], model.to_tokens(" John")[0]
        trace = ref.Trace(loss=("LOGIT_DIFF", [mary], [john]), node=("head", 1, 0), token=q, key=2, path=reference)
        scalar, theirs = ref.columns(weights, tokens, trace, _aes(model))
        prompt = body["data"]["prompt"]
        assert prompt["targetValue"] == pytest.approx(float(scalar), abs=1e-6)
        _check_rows(prompt["nodeTable"], theirs)
        p = ref.run(weights, tokens, autoencoders=_aes(model), all_logits=True)
        assert p.logits is not None
        assert [t["tokenId"] for t in prompt["topLogits"]] == torch.topk(p.logits[q], 4).indices.tolist()


async def test_patching_takes_values_from_another_prompt(server: tuple[httpx.AsyncClient, ServerState]) -> None:
    client, _ = server
    model = _model(server)
    neuron = f"{M}/mlp_neuron/0/12"
    query = """query($text: String!, $ablations: [AblationInput!]) { prompt(text: $text, ablations: $ablations) {
      activations(nodeId: "<M>/mlp_neuron/1/4") { activations } } }"""
    clean = await _ask(
        client,
        "query($t: String!, $n: ID!) { prompt(text: $t) { activations(nodeId: $n) { activations } } }",
        t=OTHER,
        n=neuron,
    )
    values = clean["data"]["prompt"]["activations"]["activations"]
    assert len(model.to_tokens(OTHER)) == len(model.to_tokens(TEXT))
    patched = await _ask(
        client, query, text=TEXT, ablations=[{"nodeId": neuron, "tokenIndices": [3, 5], "fromPrompt": OTHER}]
    )
    by_hand = []
    for position in (3, 5):
        by_hand.append({"nodeId": neuron, "tokenIndices": [position], "value": values[position]})
    constant = await _ask(client, query, text=TEXT, ablations=by_hand)
    assert "errors" not in patched and "errors" not in constant, (patched, constant)
    assert patched["data"]["prompt"]["activations"]["activations"] == pytest.approx(
        constant["data"]["prompt"]["activations"]["activations"], abs=1e-6
    )
    head_patch = await _ask(
        client, query, text=TEXT, ablations=[{"nodeId": f"{M}/attention_head/0/1", "fromPrompt": OTHER}]
    )
    assert "errors" not in head_patch, head_patch
    wrong = await _ask(client, query, text=TEXT, ablations=[{"nodeId": neuron, "fromPrompt": "Too short"}])
    assert wrong["data"]["prompt"] is None
    assert wrong["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert wrong["errors"][0]["extensions"]["argument"] == "ablations.fromPrompt"


async def test_two_conditions_in_one_query(server: tuple[httpx.AsyncClient, ServerState]) -> None:
    client, _ = server
    query = """query($text: String!, $target: TargetInput!) { prompt(text: $text, target: $target) {
      nodeTable(k: 4) { <ROW> }
      compareWith(ablations: [{nodeId: "<M>/attention_head/1/3", value: 0.0}]) {
        other { nodeTable(k: 4) { <ROW> } }
        nodeTable(k: 4) { kind node { id } token keyToken left { activation writeNorm actTimesGrad directEffect }
          right { activation writeNorm actTimesGrad directEffect } difference { actTimesGrad directEffect } }
      } } }"""
    body = await _ask(client, query, text=TEXT, target=TARGET)
    assert "errors" not in body, body
    prompt = body["data"]["prompt"]
    key = lambda r: (r["kind"], (r["node"] or {}).get("id"), r["token"], r["keyToken"])  # noqa: E731
    left = {key(r): r for r in prompt["nodeTable"]}
    right = {key(r): r for r in prompt["compareWith"]["other"]["nodeTable"]}
    rows = prompt["compareWith"]["nodeTable"]
    assert [key(r) for r in rows] == list(left) + [k for k in right if k not in left]
    for row in rows:
        for side, table in (("left", left), ("right", right)):
            if key(row) in table:
                assert row[side]["actTimesGrad"] == pytest.approx(table[key(row)]["actTimesGrad"], abs=1e-7)
        assert row["difference"]["actTimesGrad"] == pytest.approx(
            row["right"]["actTimesGrad"] - row["left"]["actTimesGrad"], abs=1e-7
        )


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("node out of range", {**TARGET, "node": f"{M}/mlp_neuron/7/0", "token": 1}, "target.node"),
    ("token past the prompt", {**TARGET, "node": f"{M}/mlp_neuron/1/0", "token": 99}, "target.token"),
    ("key after query", {"node": f"{M}/attention_head/1/0", "token": 2, "keyToken": 5}, "target.keyToken"),
    ("path on a neuron", {"node": f"{M}/mlp_neuron/1/0", "token": 2, "attentionPath": "Q"}, "target.attentionPath"),
    ("two-token target", {"targetTokens": [" Mary Ann"]}, "target.targetTokens"),
    (
        "two-token distractor",
        {"targetTokens": [" Mary"], "distractorTokens": [" John Smith"]},
        "target.distractorTokens",
    ),
    (
        "distractor on PROBS",
        {"loss": "PROBS", "targetTokens": [" Mary"], "distractorTokens": [" John"]},
        "target.distractorTokens",
    ),
    ("no loss, no node", {}, "target"),
    (
        "V without a loss",
        {"node": f"{M}/attention_head/1/0", "token": 3, "keyToken": 1, "attentionPath": "V"},
        "target.targetTokens",
    ),
    (
        "downstream before the head",
        {
            "node": f"{M}/attention_head/1/0",
            "token": 3,
            "keyToken": 1,
            "attentionPath": "V",
            "downstream": {"node": f"{M}/mlp_neuron/0/1", "token": 3},
        },
        "target.downstream.node",
    ),
]


@pytest.mark.parametrize(("name", "target", "argument"), BAD, ids=[b[0] for b in BAD])
async def test_bad_targets_fail_only_the_fields_that_need_them(
    server: tuple[httpx.AsyncClient, ServerState], name: str, target: dict[str, Any], argument: str
) -> None:
    client, _ = server
    query = """query($text: String!, $target: TargetInput!) { prompt(text: $text, target: $target) {
      tokens nodeTable(k: 3) { token } tokenAttribution activations(nodeId: "<M>/mlp_neuron/0/1") { activations } } }"""
    body = await _ask(client, query, text=TEXT, target=target)
    prompt = body["data"]["prompt"]
    assert prompt["tokens"] and prompt["activations"]["activations"], name
    assert prompt["nodeTable"] is None and prompt["tokenAttribution"] is None
    codes = {(e["extensions"]["code"], e["extensions"].get("argument")) for e in body["errors"]}
    assert codes == {("BAD_USER_INPUT", argument)}, body["errors"]


async def test_bad_values_and_arguments(server: tuple[httpx.AsyncClient, ServerState]) -> None:
    client, _ = server
    query = """query($text: String!, $ablations: [AblationInput!]) { prompt(text: $text, ablations: $ablations) { tokens } }"""
    for value in (1e7, -2e6):
        body = await _ask(client, query, text=TEXT, ablations=[{"nodeId": f"{M}/mlp_neuron/0/1", "value": value}])
        assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
        assert body["errors"][0]["extensions"]["argument"] == "ablations.value"
    fields = """query($text: String!, $target: TargetInput!) { prompt(text: $text, target: $target) {
      tokens a: attentionPattern(nodeId: "<M>/mlp_neuron/0/1") b: nodeTable(k: 0) { token } c: nodeTable(k: 2) { token } } }"""
    body = await _ask(client, fields, text=TEXT, target=TARGET)
    prompt = body["data"]["prompt"]
    assert prompt["tokens"] and prompt["c"] and prompt["a"] is None and prompt["b"] is None
    arguments = sorted(e["extensions"]["argument"] for e in body["errors"])
    assert arguments == ["k", "nodeId"] and {e["extensions"]["code"] for e in body["errors"]} == {"BAD_USER_INPUT"}
    lens = await _ask(
        client, '{ node(id: "<M>/attention_head/0/1") { outputTokens { token } inputTokens(path: K) { token } } }'
    )
    assert lens["data"]["node"]["outputTokens"] is None and lens["data"]["node"]["inputTokens"]
    assert lens["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_bad_client_never_fails_another_in_the_same_batch(
    server: tuple[httpx.AsyncClient, ServerState],
) -> None:
    client, _ = server
    query = """query($text: String!, $target: TargetInput!) { prompt(text: $text, target: $target) {
      nodeTable(k: 2) { token } targetValue } }"""
    good_target = {"targetTokens": [" it"]}
    bad_target = {"node": f"{M}/attention_head/1/0", "token": 1, "keyToken": 4}
    texts = [f"Batch mate number {i} says that" for i in range(4)]
    answers = await asyncio.gather(
        *(_ask(client, query, text=t, target=bad_target if i % 2 else good_target) for i, t in enumerate(texts))
    )
    for i, body in enumerate(answers):
        if i % 2:
            assert body["data"]["prompt"]["nodeTable"] is None
            assert body["errors"][0]["extensions"]["argument"] == "target.keyToken"
        else:
            assert "errors" not in body and body["data"]["prompt"]["nodeTable"], body


async def test_the_readme_tracing_example_answers(server: tuple[httpx.AsyncClient, ServerState]) -> None:
    client, _ = server
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### The debugger") :]
    example = section[
        section.index("```graphql") + len("```graphql") : section.index("```", section.index("```graphql") + 10)
    ]
    body = await _ask(client, example, p=TEXT)
    assert "errors" not in body, body
    prompt = body["data"]["prompt"]
    assert prompt["nodeTable"] and prompt["compareWith"]["nodeTable"] and len(prompt["tokenAttribution"]) == 14
    attribution = prompt["tokenAttribution"]
    # Through K the logit reaches only the key " Mary" (1) and what layer 0 brought to it (0); the query
    # side is detached, so no later token, " to" included, gets any gradient.
    assert attribution[1] != 0.0 and all(a == 0.0 for a in attribution[2:])
