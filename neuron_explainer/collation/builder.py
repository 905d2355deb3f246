"""The dataset builder: a corpus and a loaded model in, one TDB ``NeuronRecord`` per node out.

Two passes over batches of windows, each batch one forward that captures only the hooks the requested
groups need and stops after the last layer needed:

1. a *quantile pre-pass* over at most ``quantile_windows`` windows spread evenly over the corpus, keeping
   only each node's per-window max, from which the per-node quantile boundaries are fixed (bounded
   memory: ``n_nodes × quantile_windows`` floats per group; on a corpus no larger than that it is the
   whole corpus and the boundaries are exact);
2. the *main pass* over every window in order, updating each group's ``LayerAccumulator``.

The state is checkpointed to the output store every ``checkpoint_every_s`` seconds (or batches); a run
started again with the same inputs resumes from the checkpoint and ends byte-identical to an uninterrupted
run. Records are written only after the main pass, each in one ``put``; metadata and the dataset index
come after every record. Every model call goes through ``run_on_model`` (``InferenceEngine.call`` in the
server, a worker thread otherwise), so the event loop never runs a forward.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import importlib.metadata
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from neuron_explainer.collation.accumulators import (
    QUANTILES,
    LayerAccumulator,
    QuantileEstimator,
    SamplingConfig,
)
from neuron_explainer.collation.checkpoint import (
    Checkpoint,
    clear_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from neuron_explainer.collation.corpus import Corpus, Shard
from neuron_explainer.collation.groups import KindSpec, NodeGroup, capture, plan_groups
from neuron_explainer.collation.workers import run_all
from neuron_explainer.collation.writer import TokenStrings, specs_by_kind, write_group_records, write_metadata
from neuron_explainer.errors import BadInput
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetSpec, register_dataset

T = TypeVar("T")
RunOnModel = Callable[[Callable[[LoadedModel], T]], Awaitable[T]]
"""Runs ``fn(model)`` on the thread that owns the model, e.g. ``InferenceEngine.call``."""

FORMAT_VERSION = 1
"""Bumped when the records a given input produces change; part of the dataset tag."""


@dataclass(frozen=True, slots=True)
class CollationConfig:
    seq_len: int = 64
    top_k: int = 64
    random_k: int = 32
    quantile_k: int = 8
    seed: int = 0
    batch_size: int = 32
    quantile_windows: int = 1024
    """Windows (spread evenly) whose per-node maxima fix the quantile boundaries."""
    checkpoint_every_s: float = 120.0
    checkpoint_every_batches: int | None = None
    """When set, also checkpoint after every this many batches (tests use 1)."""
    write_concurrency: int = 16

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.top_k, self.random_k, self.quantile_k, self.seed)

    def check(self, model: LoadedModel | None = None) -> None:
        """``BadInput`` naming the first setting that cannot work (with ``model``, when given)."""
        limits = {
            "seq_len": 1,
            "top_k": 1,
            "random_k": 0,
            "quantile_k": 0,
            "batch_size": 1,
            "quantile_windows": 1,
        }
        for name, low in limits.items():
            if getattr(self, name) < low:
                raise BadInput(f"{name} must be at least {low}, got {getattr(self, name)}", argument=name)
        if model is not None and self.seq_len > model.shape.n_ctx:
            raise BadInput(
                f"seq_len {self.seq_len} exceeds {model.name}'s context of {model.shape.n_ctx} tokens",
                argument="seq_len",
                bound=model.shape.n_ctx,
            )

    def tag(self, corpus: Corpus) -> str:
        """Names the dataset folder: corpus + everything that changes which records come out."""
        parts = [corpus.hash, self.seq_len, self.top_k, self.random_k, self.quantile_k, self.seed]
        parts += [self.quantile_windows, QUANTILES, FORMAT_VERSION]
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:12]


def code_version() -> str:
    try:
        version = importlib.metadata.version("neuron-explainer")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    sources = sorted(Path(__file__).parent.glob("*.py"))
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    return f"{version}+collation.{digest}"


async def check_writable(store: BlobStore) -> None:
    """A probe write, so an unwritable output fails before any model work."""
    try:
        await store.put("_checkpoints/write-probe", b"neuron-explainer collate write probe\n")
    except Exception as e:
        raise BadInput(
            f"cannot write to the output {store.location}: {e}", argument="out", location=store.location
        ) from e


def _default_runner(model: LoadedModel) -> RunOnModel[Any]:
    async def run(fn: Callable[[LoadedModel], Any]) -> Any:
        return await asyncio.to_thread(fn, model)

    return run


class DatasetBuilder:
    """One build: ``await DatasetBuilder(...).run()``. Validates its inputs in the constructor."""

    def __init__(
        self,
        store: BlobStore,
        model: LoadedModel,
        corpus: Corpus,
        kinds: Sequence[KindSpec],
        layers: Sequence[int],
        config: CollationConfig,
        *,
        run_on_model: RunOnModel[Any] | None = None,
        progress: bool = False,
    ) -> None:
        config.check(model)
        if corpus.seq_len != config.seq_len:
            raise ValueError(f"corpus windows are {corpus.seq_len} tokens, config says {config.seq_len}")
        self.store, self.model, self.corpus, self.config = store, model, corpus, config
        self.kinds, self.layers = list(kinds), list(layers)
        self.groups: list[NodeGroup] = plan_groups(model, self.kinds, self.layers, config.seq_len)
        self.hooks = sorted({h for g in self.groups for h in g.hooks})
        self._biggest_first = sorted(self.groups, key=lambda g: -g.n_nodes * g.width)  # run_all starts in order
        self.tag = config.tag(corpus)
        self.datasets = specs_by_kind(self.kinds, model.name, self.tag)
        self._run = run_on_model or _default_runner(model)
        self._progress = progress
        key = [model.name, [k.segment for k in self.kinds], self.layers, self.tag, config.batch_size]
        self.run_key = hashlib.sha256(repr([*key, code_version()]).encode()).hexdigest()[:24]

    async def run(self) -> list[DatasetSpec]:
        """Probe the output, resume or start, build, write; returns one ``DatasetSpec`` per kind."""
        await check_writable(self.store)
        accs = await self.collect()
        await self._write(accs)
        await clear_checkpoint(self.store, self.run_key)
        return list(self.datasets.values())

    async def collect(self) -> dict[str, LayerAccumulator]:
        """The two passes (resuming from a checkpoint if there is one); the accumulators per group."""
        checkpoint = await load_checkpoint(self.store, self.run_key)
        if checkpoint is None:
            boundaries = await self.estimate_boundaries()
            start = 0
        else:
            boundaries, start = checkpoint.boundaries, checkpoint.next_window
        accs = self.accumulators(boundaries)
        if checkpoint is not None:
            for name, acc in accs.items():
                acc.load(checkpoint.groups[name])
        await self._main_pass(accs, boundaries, start)
        return accs

    def accumulators(self, boundaries: dict[str, torch.Tensor]) -> dict[str, LayerAccumulator]:
        sampling = self.config.sampling
        return {
            g.name: LayerAccumulator(g.name, g.n_nodes, g.width, sampling, boundaries[g.name])
            for g in self.groups
        }

    def step(self, model: LoadedModel, shard: Shard, accs: dict[str, LayerAccumulator]) -> None:
        """One main-pass batch: forward, extract, update every group. Runs on the model's thread."""
        seqs = np.arange(shard.start, shard.stop, dtype=np.int64)
        cache = capture(model, torch.from_numpy(self.corpus.windows(shard.start, shard.stop)), self.hooks)

        def work(g: NodeGroup) -> Callable[[], None]:
            return lambda: accs[g.name].update(g.extract(cache).float().cpu(), seqs)  # [batch, width, n]

        run_all([work(g) for g in self._biggest_first])

    def _bar(self, total: int, initial: int, desc: str) -> tqdm[Any]:
        return tqdm(
            total=total, initial=initial, desc=desc, unit="tok", unit_scale=True, file=sys.stderr,
            disable=not self._progress, dynamic_ncols=True,
        )  # fmt: skip

    def _values(self, model: LoadedModel, windows: np.ndarray) -> dict[str, torch.Tensor]:
        cache = capture(model, torch.from_numpy(windows), self.hooks)

        def extract(g: NodeGroup) -> Callable[[], torch.Tensor]:
            return lambda: g.extract(cache).float().cpu()  # [batch, width, n]

        groups = self._biggest_first
        return dict(zip([g.name for g in groups], run_all([extract(g) for g in groups]), strict=True))

    async def estimate_boundaries(self) -> dict[str, torch.Tensor]:
        n = self.corpus.n_windows
        picks = np.unique(
            np.linspace(0, n - 1, min(self.config.quantile_windows, n)).round().astype(np.int64)
        )
        estimators = {g.name: QuantileEstimator() for g in self.groups}

        def step(model: LoadedModel, idx: np.ndarray) -> None:
            for name, values in self._values(model, self.corpus.take(idx)).items():
                estimators[name].add(values.amax(dim=1))  # [batch, n]

        with self._bar(len(picks) * self.corpus.seq_len, 0, "quantile pre-pass") as bar:
            for i in range(0, len(picks), self.config.batch_size):
                idx = picks[i : i + self.config.batch_size]
                await self._run(functools.partial(step, idx=idx))
                bar.update(len(idx) * self.corpus.seq_len)
        return {name: est.boundaries() for name, est in estimators.items()}

    async def _main_pass(
        self, accs: dict[str, LayerAccumulator], boundaries: dict[str, torch.Tensor], start: int
    ) -> None:
        seq_len, every = self.corpus.seq_len, self.config.checkpoint_every_batches

        last_save, batches, saved_at = time.monotonic(), 0, None
        rest = Shard(start, self.corpus.n_windows)

        async def save(next_window: int) -> None:
            nonlocal last_save, saved_at
            state = {name: acc.state() for name, acc in accs.items()}
            await save_checkpoint(self.store, self.run_key, Checkpoint(next_window, boundaries, state))
            last_save, saved_at = time.monotonic(), next_window

        with self._bar(self.corpus.n_tokens, start * seq_len, "collate") as bar:
            for shard in self.corpus.shards(self.config.batch_size, rest):
                await self._run(functools.partial(self.step, shard=shard, accs=accs))
                bar.update(len(shard) * seq_len)
                batches += 1
                due = every is not None and batches % every == 0
                if due or time.monotonic() - last_save > self.config.checkpoint_every_s:
                    await save(shard.stop)
        if saved_at is not None and saved_at != rest.stop:
            await save(rest.stop)  # a run that was worth checkpointing resumes straight to writing

    async def _write(self, accs: dict[str, LayerAccumulator]) -> None:
        strings = TokenStrings(self.corpus, self.model.to_str_tokens)
        total = sum(g.n_nodes for g in self.groups)
        bar = tqdm(total=total, desc="records", unit="rec", file=sys.stderr, disable=not self._progress)
        with bar:
            for g in self.groups:
                await write_group_records(
                    self.store, self.datasets[g.spec], accs[g.name], g.layer, strings,
                    concurrency=self.config.write_concurrency, on_written=bar.update,
                )  # fmt: skip
        for spec, dataset in self.datasets.items():
            n_nodes = {g.layer: g.n_nodes for g in self.groups if g.spec == spec}
            await write_metadata(self.store, dataset, self._metadata(spec, dataset), self.layers, n_nodes)
            await register_dataset(self.store, dataset)

    def _metadata(self, spec: KindSpec, dataset: DatasetSpec) -> dict[str, Any]:
        c = self.config
        return {
            "dataset": dataset.name,
            "model": self.model.name,
            "kind": spec.kind.value,
            "autoencoder": spec.autoencoder,
            "activation": spec.activation,
            "per": "token pair (lower triangle, row-major)" if spec.kind.is_token_pair else "token",
            "corpus": {
                "hash": self.corpus.hash,
                "source": self.corpus.description,
                "windows": self.corpus.n_windows,
                "tokens": self.corpus.n_tokens,
            },
            "seq_len": c.seq_len,
            "top_k": c.top_k,
            "random_k": c.random_k,
            "quantile_k": c.quantile_k,
            "quantiles": list(QUANTILES),
            "quantile_windows": c.quantile_windows,
            "seed": c.seed,
            "batch_size": c.batch_size,
            "moments": "population variance, skewness g1, excess kurtosis g2 over every value",
            "code_version": code_version(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }


async def build_dataset(
    store: BlobStore,
    model: LoadedModel,
    corpus: Corpus,
    kinds: Sequence[KindSpec],
    layers: Sequence[int],
    config: CollationConfig,
    *,
    run_on_model: RunOnModel[Any] | None = None,
    progress: bool = False,
) -> list[DatasetSpec]:
    """Build (see ``DatasetBuilder``); returns one ``DatasetSpec`` per kind."""
    builder = DatasetBuilder(
        store, model, corpus, kinds, layers, config, run_on_model=run_on_model, progress=progress
    )
    return await builder.run()
