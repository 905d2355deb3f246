"""The embedded default's data: the shipped reference corpus, the demo dataset, and live layers.

``shipped_corpus/reference.txt`` is a few hundred varied English sentences written for this project
(news, science, code, dialogue, lists, numbers, names, places): ~5.5k GPT-2 tokens, ~85 windows of 64.
It is the server's *reference corpus*: the demo dataset is built over it, and a live request for a
node's top-activating records computes that node's whole layer over it with the same builder and
settings and writes the records into a live dataset of its own (the reference dataset's name plus
``-live``; in ``--write_root`` when one is given), never over a stored dataset, so the next read of
that layer finds them.

``DEMO_CONFIG`` keeps the minimum the original explainer needs (≥ 20 top and ≥ 15 random records per
node) and two records per quantile bin, so the demo for every node kind of ``tiny-gpt2`` stays small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

from neuron_explainer.collation.builder import LIVE_SUFFIX, CollationConfig, RunOnModel, build_dataset
from neuron_explainer.collation.corpus import Corpus
from neuron_explainer.collation.groups import KindSpec
from neuron_explainer.collation.writer import METADATA_BLOB, dataset_for
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetSpec
from neuron_explainer.storage.paths import join

DEMO_CONFIG = CollationConfig(seq_len=64, top_k=20, random_k=15, quantile_k=2, seed=0, batch_size=32)


def reference_corpus(model: LoadedModel, seq_len: int = DEMO_CONFIG.seq_len) -> Corpus:
    """The shipped corpus tokenized by ``model``'s tokenizer (a package-data file)."""
    path = resources.files("neuron_explainer.collation") / "shipped_corpus" / "reference.txt"
    with resources.as_file(path) as file:
        return Corpus.read(file, model.to_tokens, seq_len=seq_len)


def all_kinds(model: LoadedModel) -> list[KindSpec]:
    """Every node kind ``model`` has: neurons, heads and each loaded autoencoder's latents."""
    kinds = [KindSpec(NodeKind.MLP_NEURON), KindSpec(NodeKind.ATTENTION_HEAD)]
    return kinds + [KindSpec(kind, ae.name) for kind, ae in model.autoencoders.items()]


def kind_of(node: NodeId) -> KindSpec:
    return KindSpec(node.kind, node.autoencoder)


def reference_datasets(model: LoadedModel, corpus: Corpus | None = None) -> dict[KindSpec, DatasetSpec]:
    """Where the demo / live records of each kind of ``model`` live (whether or not built yet)."""
    tag = DEMO_CONFIG.tag(corpus or reference_corpus(model))
    return {spec: dataset_for(model.name, spec, tag) for spec in all_kinds(model)}


async def _complete(store: BlobStore, dataset: DatasetSpec, layers: Sequence[int]) -> bool:
    data = await store.get(join(dataset.records_path, METADATA_BLOB))
    if data is None:
        return False
    try:
        built = set(json.loads(data).get("layers", []))
    except (ValueError, AttributeError):
        return False
    return set(layers) <= built


async def build_demo_dataset(
    store: BlobStore,
    model: LoadedModel,
    *,
    run_on_model: RunOnModel[Any] | None = None,
    remote_model: bool = False,
    progress: bool = False,
) -> list[DatasetSpec]:
    """Every kind and layer of ``model`` over the reference corpus, unless the store already has it.

    For ``tiny-gpt2`` with ``ae-tiny-mlp`` and ``ae-tiny-attn``: 2,056 records (~95 MB as TDB JSON).
    """
    corpus = reference_corpus(model)
    datasets = reference_datasets(model, corpus)
    layers = list(range(model.shape.n_layers))
    missing = [spec for spec, d in datasets.items() if not await _complete(store, d, layers)]
    if not missing:
        return list(datasets.values())
    await build_dataset(
        store, model, corpus, missing, layers, DEMO_CONFIG, run_on_model=run_on_model, remote_model=remote_model,
        progress=progress,
    )  # fmt: skip
    return list(datasets.values())


async def build_live_layer(
    store: BlobStore,
    model: LoadedModel,
    node: NodeId,
    *,
    run_on_model: RunOnModel[Any] | None = None,
    remote_model: bool = False,
    corpus: Corpus | None = None,
) -> DatasetSpec:
    """Records for every node of ``node``'s kind and layer over the reference corpus, in the live dataset
    of that kind (``live_dataset_of``); returns that dataset. A layer it already holds is not built again.
    No checkpoint, probe or index entry is written (a read asked for it).

    The caller checks ``node`` against the model's bounds first; ``BadInput`` for a kind the model lacks.
    """
    corpus = corpus or reference_corpus(model)
    spec = kind_of(node)
    dataset = live_dataset_of(model, node, corpus)
    if await _complete(store, dataset, [node.layer]):
        return dataset
    specs = await build_dataset(
        store,
        model,
        corpus,
        [spec],
        [node.layer],
        DEMO_CONFIG,
        run_on_model=run_on_model,
        remote_model=remote_model,
        live=True,
    )
    return specs[0]


def live_dataset_of(model: LoadedModel, node: NodeId, corpus: Corpus | None = None) -> DatasetSpec:
    """Where live records of ``node``'s kind go: named apart from the reference (demo) dataset."""
    tag = DEMO_CONFIG.tag(corpus or reference_corpus(model)) + LIVE_SUFFIX
    return dataset_for(model.name, kind_of(node), tag)
