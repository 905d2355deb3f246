"""Dataset building across processes: mergeable accumulators, the builder's remote-model path, and
``neuron-explainer collate --ray_address`` on the real two-node test cluster, each against a local run.

Equal means byte-identical records: the same plan sends the same windows through each forward, samples
merge exactly and moments are folded in plan order on one side only.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ray import cloudpickle  # Ray ships its own: what it pickles a call(fn) with

from neuron_explainer.collation import build_dataset
from neuron_explainer.collation.accumulators import LayerAccumulator, SamplingConfig
from neuron_explainer.collation.builder import CollationConfig
from neuron_explainer.collation.cli import main as collate
from neuron_explainer.collation.demo import all_kinds, reference_corpus
from neuron_explainer.collation.statistics import QuantileEstimator
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import load_model
from neuron_explainer.storage.local import LocalStore
from tests.ray_cluster import RayCluster

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "neuron_explainer" / "collation" / "shipped_corpus" / "reference.txt"


def _blobs(root: Path) -> dict[str, bytes]:
    """Every blob under ``root`` but checkpoints, metadata's creation time taken out."""
    out = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if not path.is_file() or name.startswith("_checkpoints"):
            continue
        data = path.read_bytes()
        if path.name == "metadata.json":
            meta = json.loads(data)
            meta.pop("created_at")
            data = json.dumps(meta, sort_keys=True).encode()
        out[name] = data
    return out


# ---- accumulators merge exactly ----------------------------------------------------------------
@pytest.mark.parametrize("node_major", [False, True])
def test_merged_accumulators_equal_one_fed_everything(node_major: bool) -> None:
    """Three "workers" take batches round-robin; merged samples plus moments folded in batch order give the
    same state, bit for bit, as one accumulator fed every batch (heads' node-major layout too)."""
    rng = np.random.default_rng(0)
    n_seq, width, n = 90, 10, 7
    data = torch.from_numpy((np.round(rng.standard_normal((n_seq, width, n)) * 4) / 4).astype(np.float32))
    if node_major:  # how heads' values come: a transposed view of [batch, n, width]
        data = data.transpose(1, 2).contiguous().transpose(1, 2)
    est = QuantileEstimator()
    est.add(data.amax(dim=1))
    config = SamplingConfig(top_k=6, random_k=5, quantile_k=2, seed=3)
    batches = [np.arange(i, min(i + 8, n_seq)) for i in range(0, n_seq, 8)]

    def fresh() -> LayerAccumulator:
        return LayerAccumulator("g/0", n, width, config, est.boundaries())

    one = fresh()
    for seqs in batches:
        one.update(data[seqs], seqs)
    workers, driver = [fresh() for _ in range(3)], fresh()
    sums = [workers[i % 3].update_samples(data[seqs], seqs) for i, seqs in enumerate(batches)]
    for s in sums:
        driver.moments.add(s)
    for w in workers:
        driver.merge_samples(w)
    for node in range(n):
        a, b = one.summary(node), driver.summary(node)
        for field in ("top_seqs", "top_values", "random_seqs", "random_values"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        for qa, qb in zip(a.quantile_values, b.quantile_values, strict=True):
            np.testing.assert_array_equal(qa, qb)
        assert (a.mean, a.variance, a.skewness, a.kurtosis) == (b.mean, b.variance, b.skewness, b.kurtosis) or (
            np.isnan(a.variance) and np.isnan(b.variance)
        )


def test_merging_refuses_other_boundaries() -> None:
    config = SamplingConfig(top_k=2, random_k=2, quantile_k=1)
    a = LayerAccumulator("g/0", 2, 3, config, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="boundaries"):
        a.merge_samples(LayerAccumulator("g/0", 2, 3, config, torch.ones(2, 4)))


# ---- the builder with a model in another process ----------------------------------------------
@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model("tiny-gpt2", device="cpu", mlp_autoencoder="ae-tiny-mlp", attn_autoencoder="ae-tiny-attn")


async def test_remote_model_builds_the_same_records(model: LoadedModel, tmp_path: Path) -> None:
    """With ``remote_model`` every model call is pickled (cloudpickle, as Ray does) and run on an unpickled
    copy, so it can share nothing with the builder; the records equal the in-process build's."""
    config = CollationConfig(top_k=6, random_k=4, quantile_k=2, batch_size=16, quantile_windows=40)
    corpus = reference_corpus(model)
    kinds, calls = all_kinds(model), []

    async def elsewhere(fn: Any) -> Any:
        calls.append(fn)
        shipped = pickle.loads(cloudpickle.dumps(fn))
        return pickle.loads(cloudpickle.dumps(await asyncio.to_thread(shipped, model)))

    await build_dataset(LocalStore(tmp_path / "local"), model, corpus, kinds, [0, 1], config)
    await build_dataset(
        LocalStore(tmp_path / "remote"), model, corpus, kinds, [0, 1], config, run_on_model=elsewhere, remote_model=True
    )
    assert calls and _blobs(tmp_path / "remote") == _blobs(tmp_path / "local")


# ---- collate --ray_address on the cluster -----------------------------------------------------
def test_collate_on_ray_writes_the_records_of_a_local_run(ray_cluster: RayCluster, tmp_path: Path) -> None:
    """Two Ray workers (actors on the cluster, each loading tiny-gpt2) against the same command run locally:
    12 main batches of 8 windows, a pre-pass over 40 windows kept for the main pass, every kind, both
    layers, and a checkpoint after every batch on the Ray side (so it also merges mid-run): same records."""
    args = [
        "--model_name", "tiny-gpt2", "--mlp_autoencoder_name", "ae-tiny-mlp", "--attn_autoencoder_name",
        "ae-tiny-attn", "--corpus", str(CORPUS), "--kinds", "mlp_neuron,attention_head,ae-tiny-mlp,ae-tiny-attn",
        "--top_k", "6", "--random_k", "4", "--quantile_k", "2", "--batch_size", "8", "--quantile_windows", "40",
        "--no_progress",
    ]  # fmt: skip
    assert collate([*args, "--out", str(tmp_path / "local")]) == 0
    ray = ["--ray_address", ray_cluster.address, "--ray_workers", "2", "--ray_cpus_per_worker", "0.5"]
    assert collate([*args, "--out", str(tmp_path / "ray"), *ray, "--checkpoint_every_s", "0"]) == 0
    local, on_ray = _blobs(tmp_path / "local"), _blobs(tmp_path / "ray")
    assert len([k for k in local if "/collated-activations/" in k]) > 1000
    assert on_ray.keys() == local.keys()
    assert [k for k in local if on_ray[k] != local[k]] == []


def test_collate_on_ray_refuses_bad_input_before_any_worker(ray_cluster: RayCluster, tmp_path: Path) -> None:
    args = ["--model_name", "tiny-gpt2", "--corpus", str(CORPUS), "--out", str(tmp_path), "--kinds", "nope"]
    assert collate([*args, "--ray_address", ray_cluster.address]) == 2
