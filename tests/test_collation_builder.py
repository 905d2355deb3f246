"""The dataset builder on the fixed-seed tiny-gpt2 with both its autoencoders, over the shipped corpus.

Records are checked against a brute-force computation over the whole corpus (the bridge's own
``run_with_cache``, every node value of every window kept in memory), then read back through the
server's read path from a folder and from Azurite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neuron_explainer.activations.codec import decode_neuron_record
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.collation import (
    CollationConfig,
    Corpus,
    KindSpec,
    build_dataset,
    build_demo_dataset,
    build_live_layer,
    reference_corpus,
    reference_datasets,
)
from neuron_explainer.collation import builder as builder_module
from neuron_explainer.collation import groups as groups_module
from neuron_explainer.collation.builder import DatasetBuilder
from neuron_explainer.collation.demo import all_kinds
from neuron_explainer.collation.statistics import QUANTILES
from neuron_explainer.inference.engine import InferenceEngine
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.models.write_norms import value_write_norms
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.datasets import DatasetRegistry, DatasetSpec, record_path
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.locations import open_store
from neuron_explainer.storage.reader import RecordReader

M, MLP_AE, ATTN_AE = "tiny-gpt2", "ae-tiny-mlp", "ae-tiny-attn"
CONFIG = CollationConfig(top_k=8, random_k=5, quantile_k=2, batch_size=16, checkpoint_every_batches=1)
CHECKED = {  # a few nodes of each kind, per layer
    "mlp_neuron": [0, 3, 131, 255],
    "attention_head": [0, 1, 2, 3],
    MLP_AE: [0, 7, 300, 511],
    ATTN_AE: [0, 11, 128, 255],
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("ne-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_EXPLAINER_HOME", str(folder))
        yield folder


@pytest.fixture(scope="module")
def model(home: Path) -> LoadedModel:
    return load_model(M, device="cpu", mlp_autoencoder=MLP_AE, attn_autoencoder=ATTN_AE)


@pytest.fixture(scope="module")
def corpus(model: LoadedModel) -> Corpus:
    return reference_corpus(model, CONFIG.seq_len)


@pytest.fixture(scope="module")
def brute(
    model: LoadedModel, corpus: Corpus, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, int], np.ndarray]:
    """Every node's values on every window: ``[window, width, node]`` per (kind segment, layer)."""
    out: dict[tuple[str, int], np.ndarray] = {}
    seq_len = corpus.seq_len
    query, key = torch.tril_indices(seq_len, seq_len)
    unused = LocalStore(tmp_path_factory.mktemp("plan"))
    plan = DatasetBuilder(unused, model, corpus, all_kinds(model), [0, 1], CONFIG).plan
    assert sorted(np.concatenate(plan.main).tolist()) == list(range(corpus.n_windows))  # each window once
    for seqs in plan.main:  # the builder's batches: the same floats
        tokens = torch.from_numpy(corpus.take(seqs))
        with torch.no_grad():
            _, cache = model.bridge.run_with_cache(tokens)
        for layer in range(model.shape.n_layers):
            post = cache[hook_names.mlp_post(layer)]  # [batch, pos, d_mlp]
            pattern = cache[hook_names.attn_pattern(layer)]  # [batch, head, q, k]
            v = cache[hook_names.attn_v(layer)]  # [batch, k, head, d_head]
            # The live path's ‖v·W_O‖ (checked against its definition in test_write_norms.py): the same floats.
            norms = value_write_norms(v, model.w_o_grams[layer]).transpose(1, 2)  # [batch, head, k]
            pairs = (pattern * norms[:, :, None, :])[:, :, query, key].transpose(1, 2)  # [batch, pair, head]
            attn_out = cache[hook_names.attn_out(layer)]
            latents = {  # encode is differentiable: detach below
                MLP_AE: model.autoencoders[NodeKind.MLP_AUTOENCODER_LATENT].layers[layer].encode(post),
                ATTN_AE: model.autoencoders[NodeKind.ATTENTION_AUTOENCODER_LATENT].layers[layer].encode(attn_out),
            }
            for name, value in [("mlp_neuron", post), ("attention_head", pairs), *latents.items()]:
                array = value.detach().float().numpy()
                whole = out.setdefault((name, layer), np.empty((corpus.n_windows, *array.shape[1:]), np.float32))
                whole[seqs] = array
    return out


@pytest.fixture(scope="module")
async def built(model: LoadedModel, corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built")
    kinds = all_kinds(model)
    await build_dataset(LocalStore(root), model, corpus, kinds, [0, 1], CONFIG)
    return root


def _dataset(root: Path, segment: str) -> DatasetSpec:
    index = json.loads((root / "neuron-explainer-datasets.json").read_text())
    (entry,) = [d for d in index["datasets"] if d["name"].split("/")[1] == segment]
    return DatasetSpec.from_json(entry)


def _expected(model: LoadedModel, corpus: Corpus, values: np.ndarray, seqs: list[int]) -> list[ActivationRecord]:
    windows = corpus.take(seqs).tolist()
    return [ActivationRecord(model.to_str_tokens(w), values[s].tolist()) for w, s in zip(windows, seqs, strict=True)]


@pytest.mark.parametrize("segment", list(CHECKED))
def test_records_equal_brute_force(
    segment: str, built: Path, model: LoadedModel, corpus: Corpus, brute: dict[tuple[str, int], np.ndarray]
) -> None:
    dataset = _dataset(built, segment)
    for layer in (0, 1):
        values = brute[(segment, layer)]  # [window, width, node]
        for node in CHECKED[segment]:
            path = built / record_path(dataset, layer, node)
            record = decode_neuron_record(path.read_bytes(), str(path))
            x = values[:, :, node]  # [window, width]
            seq_max = x.max(axis=1)
            top = sorted(range(len(x)), key=lambda s: (-seq_max[s], s))[: CONFIG.top_k]
            assert record.most_positive_activation_records == _expected(model, corpus, x, top), (layer, node)

            every = {tuple(r.activations) for r in _expected(model, corpus, x, list(range(len(x))))}
            assert len(record.random_sample) == CONFIG.random_k
            assert {tuple(r.activations) for r in record.random_sample} <= every

            bounds = np.quantile(seq_max.astype(np.float64), QUANTILES)
            assert record.quantile_boundaries == pytest.approx(bounds.tolist(), abs=1e-12)
            edges = [-math.inf, *bounds, math.inf]
            assert record.random_sample_by_quantile is not None
            for b, group in enumerate(record.random_sample_by_quantile):
                members = int(((seq_max > edges[b]) & (seq_max <= edges[b + 1])).sum())
                assert len(group) == min(CONFIG.quantile_k, members)
                for r in group:
                    assert tuple(r.activations) in every
                    assert edges[b] < max(r.activations) <= edges[b + 1]

            flat = x.astype(np.float64).ravel()
            mean, var = flat.mean(), flat.var()
            assert record.mean == pytest.approx(mean, rel=1e-4, abs=1e-6)
            assert record.variance == pytest.approx(var, rel=1e-4, abs=1e-8)
            assert record.skewness == pytest.approx(((flat - mean) ** 3).mean() / var**1.5, rel=1e-4, abs=1e-4)
            assert record.kurtosis == pytest.approx(((flat - mean) ** 4).mean() / var**2 - 3, rel=1e-4, abs=1e-4)


def test_metadata_and_index(built: Path, model: LoadedModel, corpus: Corpus) -> None:
    index = json.loads((built / "neuron-explainer-datasets.json").read_text())
    assert sorted(d["name"].split("/")[1] for d in index["datasets"]) == sorted(CHECKED)
    head = _dataset(built, "attention_head")
    meta = json.loads((built / head.records_path / "metadata.json").read_text())
    assert meta["model"] == M and meta["kind"] == "attention_head" and meta["activation"] == "attn_write_norm"
    assert meta["corpus"]["hash"] == corpus.hash and meta["corpus"]["windows"] == corpus.n_windows
    assert (meta["layers"], meta["n_nodes"]) == ([0, 1], {"0": 4, "1": 4})
    assert (meta["seq_len"], meta["top_k"], meta["seed"]) == (64, CONFIG.top_k, 0)
    assert meta["code_version"] and meta["created_at"]


async def _read(store: Any, node: NodeId) -> tuple[NeuronRecord, str]:
    reader = RecordReader(store, await DatasetRegistry.default().with_index(store))
    stored = await reader.get_record(node)
    return stored.record, stored.dataset.name


async def test_built_dataset_is_served_by_the_read_path_from_a_folder_and_azurite(
    built: Path, model: LoadedModel, corpus: Corpus, azurite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = [
        NodeId(M, NodeKind.ATTENTION_HEAD, 0, 2),
        NodeId(M, NodeKind.ATTENTION_AUTOENCODER_LATENT, 0, 11, ATTN_AE),
    ]
    folder = [await _read(LocalStore(built), n) for n in nodes]
    assert folder[0][1] == _dataset(built, "attention_head").name

    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    store = open_store(f"az://devstoreaccount1/collate-{os.getpid()}/data")
    try:
        kinds = [KindSpec(NodeKind.ATTENTION_HEAD), KindSpec(NodeKind.ATTENTION_AUTOENCODER_LATENT, ATTN_AE)]
        await build_dataset(store, model, corpus, kinds, [0], CONFIG)
        assert [await _read(store, n) for n in nodes] == folder  # same records, same dataset names
    finally:
        await store.close()


class _Crash(Exception):
    pass


def _runner(model: LoadedModel, crash_after: int | None, calls: list[int]) -> Callable[[Any], Any]:
    async def run(fn: Callable[[LoadedModel], Any]) -> Any:
        calls.append(1)
        if crash_after is not None and len(calls) > crash_after:
            raise _Crash
        return await asyncio.to_thread(fn, model)

    return run


def _blobs(root: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            data = path.read_bytes()
            if path.name == "metadata.json":  # the build date is the one thing allowed to differ
                meta = json.loads(data)
                meta.pop("created_at")
                data = json.dumps(meta, sort_keys=True).encode()
            out[str(path.relative_to(root))] = data
    return out


@pytest.mark.parametrize(
    ("config", "done"),
    [
        (CONFIG, 3),  # the pre-pass covers the corpus: the main pass is its kept values, then forwards again
        (dataclasses.replace(CONFIG, quantile_windows=20), 1),  # part kept: resumes inside the kept batches
        (dataclasses.replace(CONFIG, reuse_prepass_bytes=0), 3),  # nothing kept: two forwards per window
    ],
    ids=["whole-prepass-kept", "part-kept", "not-kept"],
)
async def test_kill_and_resume_equals_a_clean_run(
    model: LoadedModel, corpus: Corpus, tmp_path: Path, config: CollationConfig, done: int
) -> None:
    kinds = [KindSpec(NodeKind.MLP_NEURON), KindSpec(NodeKind.ATTENTION_HEAD)]
    clean, resumed = LocalStore(tmp_path / "clean"), LocalStore(tmp_path / "resumed")
    await build_dataset(clean, model, corpus, kinds, [1], config)

    plan = DatasetBuilder(resumed, model, corpus, kinds, [1], config).plan
    assert plan.reuse == (config.reuse_prepass_bytes > 0) and len(plan.main) > done
    calls: list[int] = []  # one model call per pre-pass batch, then one per main-pass batch
    crash = _runner(model, len(plan.prepass) + done, calls)
    builder = DatasetBuilder(resumed, model, corpus, kinds, [1], config, run_on_model=crash)
    with pytest.raises(_Crash):
        await builder.run()
    visible = [p for p in (tmp_path / "resumed").rglob("*.json")]
    assert visible == []  # no record, metadata or index entry from the interrupted run
    assert (tmp_path / "resumed" / "_checkpoints" / f"{builder.run_key}.pt").stat().st_size > 0

    calls.clear()
    again = DatasetBuilder(resumed, model, corpus, kinds, [1], config, run_on_model=_runner(model, None, calls))
    await again.run()
    assert len(calls) == len(plan.main) - done  # resumed after the crash's last batch: no pre-pass, no replay
    assert _blobs(tmp_path / "resumed") == _blobs(tmp_path / "clean")


async def test_kept_prepass_values_spare_the_second_forward(
    model: LoadedModel, corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the pre-pass covering the corpus, keeping its values halves the forwards; records are equal."""
    forwards: list[int] = []
    real_capture = builder_module.capture

    def counting(model: LoadedModel, tokens: torch.Tensor, hooks: Any) -> Any:
        forwards.append(len(tokens))
        return real_capture(model, tokens, hooks)

    monkeypatch.setattr(builder_module, "capture", counting)  # main-pass forwards
    monkeypatch.setattr(groups_module, "capture", counting)  # pre-pass forwards (``batch_values``)
    kinds = [KindSpec(NodeKind.MLP_NEURON), KindSpec(NodeKind.ATTENTION_HEAD)]
    await build_dataset(LocalStore(tmp_path / "kept"), model, corpus, kinds, [0], CONFIG)
    assert sum(forwards) == corpus.n_windows
    forwards.clear()
    no_reuse = dataclasses.replace(CONFIG, reuse_prepass_bytes=0)
    await build_dataset(LocalStore(tmp_path / "again"), model, corpus, kinds, [0], no_reuse)
    assert sum(forwards) == 2 * corpus.n_windows

    def records(root: Path) -> dict[str, bytes]:  # metadata says whether the pre-pass was reused
        return {k: v for k, v in _blobs(root).items() if "/collated-activations/" in k and k[-6:-5].isdigit()}

    assert len(records(tmp_path / "kept")) == 256 + 4
    assert records(tmp_path / "kept") == records(tmp_path / "again")


class _FailingStore:
    """A real LocalStore whose ``fail_at``-th record write raises, as a lost connection would."""

    def __init__(self, inner: LocalStore, fail_at: int) -> None:
        self.inner, self.fail_at, self.record_puts = inner, fail_at, 0

    @property
    def location(self) -> str:
        return self.inner.location

    async def get(self, path: str) -> bytes | None:
        return await self.inner.get(path)

    async def get_with_etag(self, path: str) -> tuple[bytes, str] | None:
        return await self.inner.get_with_etag(path)

    async def put(self, path: str, data: bytes, if_match: str | None = None) -> str:
        if "/collated-activations/" in path:
            self.record_puts += 1
            if self.record_puts == self.fail_at:
                raise _Crash
        return await self.inner.put(path, data, if_match)

    async def list(self, prefix: str) -> list[str]:
        return await self.inner.list(prefix)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_crash_while_writing_resumes_at_the_writing(model: LoadedModel, corpus: Corpus, tmp_path: Path) -> None:
    kinds = [KindSpec(NodeKind.ATTENTION_HEAD)]
    await build_dataset(LocalStore(tmp_path / "clean"), model, corpus, kinds, [0, 1], CONFIG)
    failing = _FailingStore(LocalStore(tmp_path / "resumed"), fail_at=6)
    with pytest.raises(_Crash):
        await build_dataset(failing, model, corpus, kinds, [0, 1], CONFIG)
    assert not list((tmp_path / "resumed").rglob("metadata.json"))
    assert not (tmp_path / "resumed" / "neuron-explainer-datasets.json").exists()
    calls: list[int] = []
    resumed = LocalStore(tmp_path / "resumed")
    await DatasetBuilder(resumed, model, corpus, kinds, [0, 1], CONFIG, run_on_model=_runner(model, None, calls)).run()
    assert calls == []  # the accumulators came back from the final checkpoint
    assert _blobs(tmp_path / "resumed") == _blobs(tmp_path / "clean")


async def test_demo_dataset_every_kind_under_a_minute_then_served(model: LoadedModel, tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    started = time.perf_counter()
    specs = await build_demo_dataset(store, model)
    elapsed = time.perf_counter() - started
    assert elapsed < 60, elapsed
    assert {(s.kind, s.autoencoder) for s in specs} == {(k.kind, k.autoencoder) for k in all_kinds(model)}
    for spec in specs:
        for layer in (0, 1):
            n = len(list((tmp_path / spec.records_path / str(layer)).glob("*.json")))
            assert n == {"mlp_neuron": 256, "attention_head": 4, MLP_AE: 512, ATTN_AE: 256}[spec.name.split("/")[1]]
    record, dataset = await _read(store, NodeId(M, NodeKind.MLP_AUTOENCODER_LATENT, 1, 42, MLP_AE))
    assert len(record.most_positive_activation_records) == 20 and len(record.random_sample) == 15
    assert dataset == reference_datasets(model)[KindSpec(NodeKind.MLP_AUTOENCODER_LATENT, MLP_AE)].name

    def no_forwards(fn: Any) -> Any:
        raise AssertionError("the demo was rebuilt although it is complete")

    await build_demo_dataset(store, model, run_on_model=no_forwards)


async def test_live_layer_writes_a_live_dataset_of_its_own_and_merges_layers(
    model: LoadedModel, tmp_path: Path
) -> None:
    store = LocalStore(tmp_path)
    node = NodeId(M, NodeKind.ATTENTION_HEAD, 1, 2)
    engine = InferenceEngine(model)  # as in the server: every forward on the engine's worker thread
    try:
        spec = await build_live_layer(store, model, node, run_on_model=engine.call)
    finally:
        await engine.close()
    reference = reference_datasets(model)[KindSpec(NodeKind.ATTENTION_HEAD)]
    assert spec.name == reference.name + "-live" and spec.records_path != reference.records_path
    assert not (tmp_path / "_checkpoints").exists() and not (tmp_path / "neuron-explainer-datasets.json").exists()
    record = decode_neuron_record((tmp_path / spec.records_path / "1" / "2.json").read_bytes(), "live")
    assert len(record.most_positive_activation_records) == 20
    await build_live_layer(store, model, NodeId(M, NodeKind.ATTENTION_HEAD, 0, 0))
    meta = json.loads((tmp_path / spec.records_path / "metadata.json").read_text())
    assert meta["layers"] == [0, 1]
