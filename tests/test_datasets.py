"""The dataset registry (the public layout, the index blob) and the model shapes that bound node ids."""

from __future__ import annotations

import asyncio
import json

import pytest

from neuron_explainer.errors import BadInput, CorruptBlob, NotFound
from neuron_explainer.models.shapes import AUTOENCODER_KINDS, AUTOENCODER_LATENTS, KNOWN_SHAPES, check_bounds
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import (
    INDEX_BLOB,
    DatasetRegistry,
    DatasetSpec,
    encode_index,
    explanation_path,
    record_path,
    register_dataset,
)

MLP = NodeKind.MLP_NEURON


def _paths(node: NodeId) -> list[tuple[str, str]]:
    return [
        (record_path(d, node.layer, node.index), explanation_path(d, node.layer, node.index))
        for d in DatasetRegistry.default().datasets_for(node)
    ]


# --- the public layout ------------------------------------------------------------------------


def test_default_registry_reproduces_the_public_layout() -> None:
    assert _paths(NodeId("gpt2-xl", MLP, 47, 6399)) == [
        ("data/collated-activations/47/6399.json", "data/explanations/47/6399.jsonl")
    ]
    assert _paths(NodeId("gpt2-small", MLP, 5, 131)) == [
        ("gpt2_small_data/collated-activations/5/131.json", "gpt2_small_data/explanations/5/131.jsonl")
    ]
    assert _paths(NodeId("gpt2-small", NodeKind.ATTENTION_HEAD, 5, 1)) == [
        (
            "gpt2_small/attn_write_norm/collated-activations-by-token-pair/5/1.json",
            "gpt2_small/attn_write_norm/explanations/5/1.jsonl",
        )
    ]
    latent = NodeId("gpt2-small", NodeKind.ATTENTION_AUTOENCODER_LATENT, 3, 17, "ae-resid-delta-attn-v4")
    assert _paths(latent) == [
        (
            "gpt2_small/autoencoder_latent/resid_delta_attn_v4/collated-activations/3/17.json",
            "gpt2_small/autoencoder_latent/resid_delta_attn_v4/explanations/3/17.jsonl",
        )
    ]
    folders = {
        "ae-mlp-post-act-v1": "mlp_post_act_v1",
        "ae-resid-delta-mlp-v1": "resid_delta_mlp_v1",
        "ae-mlp-post-act-v4": "mlp_post_act_v4",
        "ae-resid-delta-mlp-v4": "resid_delta_mlp_v4",
    }
    for ae, folder in folders.items():
        node = NodeId("gpt2-small", NodeKind.MLP_AUTOENCODER_LATENT, 0, 1, ae)
        assert _paths(node) == [
            (
                f"gpt2_small/autoencoder_latent/{folder}/collated-activations/0/1.json",
                f"gpt2_small/autoencoder_latent/{folder}/explanations/0/1.jsonl",
            )
        ]


def test_registry_lookups() -> None:
    registry = DatasetRegistry.default()
    assert registry.datasets_for(NodeId("tiny-gpt2", MLP, 0, 0)) == []
    assert registry.datasets_for(NodeId("gpt2-medium", MLP, 0, 0)) == []
    assert registry.models() == ["gpt2-xl", "gpt2-small"]
    assert len(registry.all()) == 8 and len({d.name for d in registry.all()}) == 8
    assert registry.get("gpt2-small/mlp_post_act").records_path == "gpt2_small_data/collated-activations"
    with pytest.raises(NotFound):
        registry.get("nope")
    assert registry.autoencoder_kinds() == AUTOENCODER_KINDS
    with pytest.raises(ValueError, match="duplicate"):
        DatasetRegistry([*registry.all(), registry.all()[0]])


def test_dataset_spec_json_round_trip() -> None:
    for spec in DatasetRegistry.default().all():
        assert DatasetSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    minimal = {"name": "mine", "model": "tiny-gpt2", "kind": "mlp_neuron", "records_path": "runs/a/records/"}
    spec = DatasetSpec.from_json(minimal)
    assert (spec.autoencoder, spec.records_path, spec.explanations_path) == (
        None,
        "runs/a/records",
        "runs/a/explanations",
    )
    with pytest.raises(ValueError):
        DatasetSpec.from_json({**minimal, "kind": "mlp_autoencoder_latent"})  # latents need an autoencoder


# --- the index blob ---------------------------------------------------------------------------


async def test_index_datasets_come_first_and_replace_same_named_defaults(store: BlobStore) -> None:
    mine = DatasetSpec("my-gpt2-small-mlp", "gpt2-small", MLP, None, "mine/records", "mine/explanations")
    tiny = DatasetSpec(
        "tiny-latents", "tiny-gpt2", NodeKind.MLP_AUTOENCODER_LATENT, "ae-custom", "tiny/records", "tiny/expl"
    )
    moved = DatasetSpec("gpt2-xl/mlp_post_act", "gpt2-xl", MLP, None, "elsewhere/xl", "elsewhere/xl-expl")
    await store.put(INDEX_BLOB, encode_index([mine, tiny, moved]))
    default = DatasetRegistry.default()
    registry = await default.with_index(store)
    assert [d.name for d in registry.datasets_for(NodeId("gpt2-small", MLP, 1, 2))] == [
        "my-gpt2-small-mlp",
        "gpt2-small/mlp_post_act",
    ]
    assert registry.datasets_for(NodeId("gpt2-xl", MLP, 1, 2)) == [moved]
    assert registry.datasets_for(NodeId("tiny-gpt2", NodeKind.MLP_AUTOENCODER_LATENT, 0, 3, "ae-custom")) == [tiny]
    assert registry.autoencoder_kinds()["ae-custom"] is NodeKind.MLP_AUTOENCODER_LATENT
    assert len(registry.all()) == 10
    assert default.datasets_for(NodeId("gpt2-xl", MLP, 1, 2))[0].records_path == "data/collated-activations"


async def test_no_index_means_the_defaults(store: BlobStore) -> None:
    default = DatasetRegistry.default()
    assert (await default.with_index(store)).all() == default.all()


@pytest.mark.parametrize("content", [b"not json", b'{"sets": []}', b'{"datasets": [{"name": "x"}]}'])
async def test_a_malformed_index_names_the_blob(store: BlobStore, content: bytes) -> None:
    await store.put(INDEX_BLOB, content)
    with pytest.raises(CorruptBlob) as failure:
        await DatasetRegistry.default().with_index(store)
    assert failure.value.fields["blob"].endswith(INDEX_BLOB)


async def test_concurrent_builders_registering_datasets_lose_none(store: BlobStore) -> None:
    specs = [DatasetSpec(f"run-{i}", "tiny-gpt2", MLP, None, f"runs/{i}/records", f"runs/{i}/expl") for i in range(8)]
    await asyncio.gather(*(register_dataset(store, s) for s in specs))
    again = DatasetSpec("run-3", "tiny-gpt2", MLP, None, "runs/3b/records", "runs/3b/expl")
    await register_dataset(store, again)
    registry = await DatasetRegistry([]).with_index(store)
    assert sorted(d.name for d in registry.all()) == [f"run-{i}" for i in range(8)]
    assert registry.get("run-3") == again


# --- shapes and bounds ------------------------------------------------------------------------


def test_known_shapes() -> None:
    shapes = {n: (s.n_layers, s.d_model, s.d_mlp, s.n_heads, s.n_ctx) for n, s in KNOWN_SHAPES.items()}
    assert shapes == {
        "gpt2-small": (12, 768, 3072, 12, 1024),
        "gpt2-medium": (24, 1024, 4096, 16, 1024),
        "gpt2-large": (36, 1280, 5120, 20, 1024),
        "gpt2-xl": (48, 1600, 6400, 25, 1024),
        "tiny-gpt2": (2, 64, 256, 4, 128),
    }
    assert AUTOENCODER_LATENTS["ae-resid-delta-attn-v4"] == 10240
    assert AUTOENCODER_LATENTS["ae-resid-delta-mlp-v4"] == 32768
    assert AUTOENCODER_KINDS["ae-tiny-attn"] is NodeKind.ATTENTION_AUTOENCODER_LATENT
    assert (AUTOENCODER_LATENTS["ae-tiny-mlp"], AUTOENCODER_LATENTS["ae-tiny-attn"]) == (512, 256)


@pytest.mark.parametrize(
    "node_id, n_latents, message",
    [
        ("gpt2-small/mlp_neuron/12/0", None, "layer 12 out of range: gpt2-small has layers 0..11"),
        ("gpt2-small/mlp_neuron/0/3072", None, "index 3072 out of range: gpt2-small has MLP neurons 0..3071"),
        ("gpt2-small/attention_head/11/12", None, "gpt2-small has attention heads 0..11"),
        ("gpt2-small/ae-resid-delta-attn-v4/0/10240", None, "ae-resid-delta-attn-v4 latents 0..10239"),
        ("gpt2-small/ae-resid-delta-mlp-v4/0/32000", 32000, "ae-resid-delta-mlp-v4 latents 0..31999"),
        ("tiny-gpt2/attention_head/2/0", None, "layer 2 out of range: tiny-gpt2 has layers 0..1"),
        ("tiny-gpt2/ae-resid-delta-mlp-v4/0/0", None, "belongs to gpt2-small"),
    ],
)
def test_out_of_range_nodes_name_the_bound(node_id: str, n_latents: int | None, message: str) -> None:
    node = NodeId.parse(node_id, AUTOENCODER_KINDS)
    with pytest.raises(BadInput) as failure:
        check_bounds(node, KNOWN_SHAPES[node.model], n_latents)
    assert message in failure.value.message
    assert failure.value.fields["node"] == node_id


def test_in_range_nodes_pass() -> None:
    for node_id in [
        "gpt2-small/mlp_neuron/11/3071",
        "gpt2-small/attention_head/0/11",
        "gpt2-small/ae-resid-delta-attn-v4/11/10239",
        "gpt2-xl/mlp_neuron/47/6399",
        "tiny-gpt2/ae-tiny-mlp/1/511",
    ]:
        node = NodeId.parse(node_id, AUTOENCODER_KINDS)
        check_bounds(node, KNOWN_SHAPES[node.model])
    unknown_ae = NodeId("tiny-gpt2", NodeKind.MLP_AUTOENCODER_LATENT, 0, 10**6, "users-own-ae")
    check_bounds(unknown_ae, KNOWN_SHAPES["tiny-gpt2"])  # width unknown: only the layer is checked
    with pytest.raises(BadInput, match="for model 'gpt2-xl'"):
        check_bounds(NodeId("gpt2-xl", MLP, 0, 0), KNOWN_SHAPES["gpt2-small"])
