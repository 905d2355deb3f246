"""``neuron-explainer collate --ray_address ...``: a build's two passes on Ray workers, the same records.

Each worker is a Ray actor that loads the model itself (one per GPU, or N on CPU) and plans the same node
groups; the driver never loads weights (it reads the corpus and writes records with a view of the model,
``models.facts``). The plan is the local one (``collation.plan``): batch ``i`` of either pass goes to
worker ``i % n``. A worker keeps what is exactly mergeable -- each group's top-K and hashed samples, over
the windows it saw -- and answers each main-pass batch with that batch's moment sums, which the driver
folds in plan order, as a local run would. At the end the driver merges every worker's samples
(``LayerAccumulator.merge_samples``) and writes records, metadata and the index entry as usual: for the
same plan, records byte-identical to a single-process run. Checkpoints have the local format (the driver
waits for the batches in flight, then saves its folded moments merged with the workers' samples), so a
run interrupted on Ray resumes locally or on Ray, with any number of workers.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuron_explainer.collation.accumulators import LayerAccumulator
from neuron_explainer.collation.builder import CollationConfig, DatasetBuilder
from neuron_explainer.collation.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from neuron_explainer.collation.corpus import Corpus
from neuron_explainer.collation.groups import KindSpec, NodeGroup, batch_values, plan_groups
from neuron_explainer.collation.statistics import MomentSums, QuantileEstimator
from neuron_explainer.collation.workers import run_all
from neuron_explainer.models.loaded_model import LoadedModel

IN_FLIGHT_PER_WORKER = 2
"""Main-pass batches sent ahead to each worker, so it never waits for the driver between batches."""


@dataclass(frozen=True)
class WorkerSpec:
    model_name: str
    mlp_autoencoder: str | None = None
    attn_autoencoder: str | None = None
    device: str | None = None


class CollateWorker:
    """One Ray actor's share of a build: ``prepare``, ``prepass`` batches, ``begin``, ``step`` batches, ``samples``."""

    def __init__(self, spec: WorkerSpec) -> None:
        from neuron_explainer.models.model_registry import load_model

        self.model: LoadedModel = load_model(
            spec.model_name, device=spec.device, mlp_autoencoder=spec.mlp_autoencoder,
            attn_autoencoder=spec.attn_autoencoder,
        )  # fmt: skip
        self.groups: list[NodeGroup] = []
        self.accs: dict[str, LayerAccumulator] = {}
        self.kept: dict[int, dict[str, torch.Tensor]] = {}

    def facts(self) -> Any:
        from neuron_explainer.models.facts import model_facts

        return model_facts(self.model)

    def prepare(self, corpus: Corpus, kinds: list[KindSpec], layers: list[int], config: CollationConfig) -> None:
        self.corpus, self.config = corpus, config
        self.groups = sorted(plan_groups(self.model, kinds, layers, config.seq_len), key=lambda g: -g.n_nodes * g.width)
        self.hooks = sorted({h for g in self.groups for h in g.hooks})
        self.kept.clear()

    def _values(self, seqs: np.ndarray) -> dict[str, torch.Tensor]:
        return batch_values(self.model, self.groups, self.hooks, self.corpus.take(seqs))

    def prepass(self, index: int, seqs: np.ndarray, keep: bool) -> dict[str, torch.Tensor]:
        """Per-window maxima ``[batch, n]`` per group; with ``keep`` the values wait for main batch ``index``."""
        values = self._values(seqs)
        if keep:
            self.kept[index] = values
        return {name: v.amax(dim=1) for name, v in values.items()}

    def begin(self, boundaries: dict[str, torch.Tensor]) -> None:
        sampling = self.config.sampling
        self.accs = {
            g.name: LayerAccumulator(g.name, g.n_nodes, g.width, sampling, boundaries[g.name]) for g in self.groups
        }

    def step(self, index: int, seqs: np.ndarray) -> dict[str, MomentSums]:
        """Main batch ``index``: samples kept here, moment sums returned (side by side per group, as locally)."""
        values = self.kept.pop(index, None)
        if values is None:
            values = self._values(seqs)
        found = values

        def work(g: NodeGroup) -> Any:
            return lambda: self.accs[g.name].update_samples(found[g.name], seqs)

        return dict(zip([g.name for g in self.groups], run_all([work(g) for g in self.groups]), strict=True))

    def samples(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: acc.state() for name, acc in self.accs.items()}


class RayCollation:
    """``await builder.run(collect=RayCollation(workers).collect)`` (the builder holds a model view)."""

    def __init__(self, workers: list[Any]) -> None:
        if not workers:
            raise ValueError("collation on Ray needs at least one worker")
        self.workers = workers

    async def collect(self, builder: DatasetBuilder) -> dict[str, LayerAccumulator]:
        import ray

        corpus = ray.put(builder.corpus)
        await asyncio.gather(
            *(w.prepare.remote(corpus, builder.kinds, builder.layers, builder.config) for w in self.workers)
        )
        checkpoint = await load_checkpoint(builder.store, builder.run_key)
        if checkpoint is None:
            boundaries, start = await self._prepass(builder), 0
        else:
            boundaries, start = checkpoint.boundaries, checkpoint.next_batch
        accs = builder.accumulators(boundaries)
        if checkpoint is not None:
            for name, acc in accs.items():
                acc.load(checkpoint.groups[name])
        await asyncio.gather(*(w.begin.remote(boundaries) for w in self.workers))
        await self._main_pass(builder, accs, boundaries, start)
        return await self._merged(builder, accs)

    async def _prepass(self, builder: DatasetBuilder) -> dict[str, torch.Tensor]:
        estimators = {g.name: QuantileEstimator() for g in builder.groups}
        n, keep = len(self.workers), builder.plan.reuse
        refs = [self.workers[i % n].prepass.remote(i, idx, keep) for i, idx in enumerate(builder.plan.prepass)]
        with builder.bar(
            sum(len(b) for b in builder.plan.prepass) * builder.corpus.seq_len, 0, "quantile pre-pass"
        ) as bar:
            for ref, idx in zip(refs, builder.plan.prepass, strict=True):
                for name, maxima in (await ref).items():
                    estimators[name].add(maxima)
                bar.update(len(idx) * builder.corpus.seq_len)
        return {name: est.boundaries() for name, est in estimators.items()}

    async def _main_pass(
        self,
        builder: DatasetBuilder,
        accs: dict[str, LayerAccumulator],
        boundaries: dict[str, torch.Tensor],
        start: int,
    ) -> None:
        batches, n, seq_len = builder.plan.main, len(self.workers), builder.corpus.seq_len
        every, config = builder.config.checkpoint_every_batches, builder.config
        pending: collections.deque[tuple[int, Any]] = collections.deque()
        next_batch, done, last_save = start, 0, time.monotonic()
        initial = sum(len(b) for b in batches[:start]) * seq_len
        with builder.bar(builder.corpus.n_tokens, initial, "collate") as bar:
            while next_batch < len(batches) or pending:
                while next_batch < len(batches) and len(pending) < IN_FLIGHT_PER_WORKER * n:
                    worker = self.workers[next_batch % n]
                    pending.append((next_batch, worker.step.remote(next_batch, batches[next_batch])))
                    next_batch += 1
                i, ref = pending.popleft()
                for name, sums in (await ref).items():  # in plan order: the local run's bits
                    accs[name].moments.add(sums)
                bar.update(len(batches[i]) * seq_len)
                done += 1
                due = every is not None and done % every == 0
                if due or time.monotonic() - last_save > config.checkpoint_every_s:
                    while pending:  # a checkpoint holds every batch before its next_batch and none after
                        j, ref = pending.popleft()
                        for name, sums in (await ref).items():
                            accs[name].moments.add(sums)
                        bar.update(len(batches[j]) * seq_len)
                    merged = await self._merged(builder, _copy(builder, accs, boundaries))
                    state = {name: acc.state() for name, acc in merged.items()}
                    await save_checkpoint(builder.store, builder.run_key, Checkpoint(next_batch, boundaries, state))
                    last_save = time.monotonic()

    async def _merged(self, builder: DatasetBuilder, accs: dict[str, LayerAccumulator]) -> dict[str, LayerAccumulator]:
        """``accs`` (moments, and samples of a resumed checkpoint) with every worker's samples merged in."""
        for samples in await asyncio.gather(*(w.samples.remote() for w in self.workers)):
            part = builder.accumulators({name: s["boundaries"] for name, s in samples.items()})
            for name, state in samples.items():
                part[name].load(state)
                accs[name].merge_samples(part[name])
        return accs


def _copy(
    builder: DatasetBuilder, accs: dict[str, LayerAccumulator], boundaries: dict[str, torch.Tensor]
) -> dict[str, LayerAccumulator]:
    copy = builder.accumulators(boundaries)
    for name, acc in accs.items():
        copy[name].load({k: v.clone() for k, v in acc.state().items()})
    return copy


def start_workers(spec: WorkerSpec, count: int, cpus: float, gpus: float) -> list[Any]:
    """``count`` ``CollateWorker`` actors (each loads the model); call after ``ray_backend.connect``."""
    import ray

    actor = ray.remote(CollateWorker).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
    return [actor.remote(spec) for _ in range(count)]


def default_workers(cpus_per_worker: float, gpus_per_worker: float) -> tuple[int, float]:
    """(workers, GPUs each) for ``--ray_workers 0``: one per GPU of the cluster, else one per ``cpus_per_worker``."""
    import ray

    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    if gpus_per_worker < 0:
        gpus_per_worker = 1.0 if gpus else 0.0
    if gpus_per_worker > 0:
        return max(1, int(gpus / gpus_per_worker)), gpus_per_worker
    cpus = float(resources.get("CPU", 1))
    return max(1, int(cpus // max(cpus_per_worker, 1e-9))), 0.0
