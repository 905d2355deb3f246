"""The dataset builder: a corpus and a loaded model in, one TDB ``NeuronRecord`` per node out.

Two passes over batches of windows, each batch one forward that captures only the hooks the requested
groups need and stops after the last layer needed:

1. a *quantile pre-pass* over at most ``quantile_windows`` windows spread evenly over the corpus, keeping
   each node's per-window max, from which the per-node quantile boundaries are fixed (bounded memory:
   ``n_nodes × quantile_windows`` floats per group; on a corpus no larger than that it is the whole
   corpus and the boundaries are exact);
2. the *main pass*, updating each group's ``LayerAccumulator`` with every window once.

When the pre-pass's values all fit in ``reuse_prepass_bytes`` they are kept and the main pass starts with
them instead of running those windows through the model again (a corpus of at most ``quantile_windows``
windows then costs one forward per window, not two). Either way the main pass is a fixed :class:`Plan`
of batches, so a run is deterministic and a resumed run forwards exactly the batches it had left, with
the same batch composition (hence the same floats).

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

from neuron_explainer.collation.accumulators import LayerAccumulator, SamplingConfig
from neuron_explainer.collation.checkpoint import (
    Checkpoint,
    clear_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from neuron_explainer.collation.corpus import Corpus
from neuron_explainer.collation.groups import KindSpec, NodeGroup, batch_values, capture, plan_groups
from neuron_explainer.collation.plan import Plan
from neuron_explainer.collation.statistics import QUANTILES, QuantileEstimator
from neuron_explainer.collation.workers import run_all
from neuron_explainer.collation.writer import TokenStrings, specs_by_kind, write_group_records, write_metadata
from neuron_explainer.errors import BadInput
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetSpec, register_dataset

T = TypeVar("T")
RunOnModel = Callable[[Callable[[LoadedModel], T]], Awaitable[T]]
"""Runs ``fn(model)`` on the thread that owns the model, e.g. ``InferenceEngine.call``."""
Values = dict[str, torch.Tensor]
"""One batch's values per group name, ``[batch, width, n_nodes]`` float32 on the CPU."""
Collect = Callable[["DatasetBuilder"], Awaitable[dict[str, LayerAccumulator]]]
"""Runs a builder's two passes somewhere (``DatasetBuilder.collect`` here; ``collation.ray_collate`` on Ray)."""

FORMAT_VERSION = 2
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
    reuse_prepass_bytes: int = 1 << 30
    """Keep the pre-pass's values for the main pass when they fit in this many bytes (0: never)."""

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
            "reuse_prepass_bytes": 0,
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


LIVE_SUFFIX = "-live"
"""Appended to a live build's dataset tag: its records never land in (or over) a stored dataset."""


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
        remote_model: bool = False,
        progress: bool = False,
        live: bool = False,
    ) -> None:
        """``remote_model``: ``run_on_model`` runs functions in another process (``InferenceBackend.in_process``
        is False), so each call is a pure forward (``groups.batch_values``) whose values come back here,
        where they are accumulated; in-process, a batch's forward and accumulation run together there.
        ``live``: a build a read asked for (``build_live_layer``): its datasets are named apart from any
        stored one (``LIVE_SUFFIX``), and it leaves no checkpoint, write probe or index entry behind."""
        config.check(model)
        if corpus.seq_len != config.seq_len:
            raise ValueError(f"corpus windows are {corpus.seq_len} tokens, config says {config.seq_len}")
        self.store, self.model, self.corpus, self.config = store, model, corpus, config
        self.kinds, self.layers = list(kinds), list(layers)
        self.groups: list[NodeGroup] = plan_groups(model, self.kinds, self.layers, config.seq_len)
        self.hooks = sorted({h for g in self.groups for h in g.hooks})
        self._biggest_first = sorted(self.groups, key=lambda g: -g.n_nodes * g.width)  # run_all starts in order
        self.tag = config.tag(corpus) + (LIVE_SUFFIX if live else "")
        self.live = live
        bytes_per_window = sum(g.width * g.n_nodes * 4 for g in self.groups)  # float32 values
        self.plan = Plan.make(corpus.n_windows, config, bytes_per_window)
        self.datasets = specs_by_kind(self.kinds, model.name, self.tag)
        self._run = run_on_model or _default_runner(model)
        self.remote_model = remote_model
        self._progress = progress
        key = [model.name, [k.segment for k in self.kinds], self.layers, self.tag, config.batch_size]
        key.append(self.plan.reuse)
        self.run_key = hashlib.sha256(repr([*key, code_version()]).encode()).hexdigest()[:24]

    async def run(self, collect: Collect | None = None) -> list[DatasetSpec]:
        """Probe the output, resume or start, build (``collect``, default ``DatasetBuilder.collect``), write;
        returns one ``DatasetSpec`` per kind."""
        if not self.live:
            await check_writable(self.store)
        accs = await (collect(self) if collect is not None else self.collect())
        await self._write(accs)
        if not self.live:
            await clear_checkpoint(self.store, self.run_key)
        return list(self.datasets.values())

    async def collect(self) -> dict[str, LayerAccumulator]:
        """The two passes (resuming from a checkpoint if there is one); the accumulators per group."""
        checkpoint = None if self.live else await load_checkpoint(self.store, self.run_key)
        kept: dict[int, Values] = {}
        if checkpoint is None:
            boundaries, kept = await self.estimate_boundaries()
            start = 0
        else:
            boundaries, start = checkpoint.boundaries, checkpoint.next_batch
        accs = self.accumulators(boundaries)
        if checkpoint is not None:
            for name, acc in accs.items():
                acc.load(checkpoint.groups[name])
        await self._main_pass(accs, boundaries, start, kept)
        return accs

    def accumulators(self, boundaries: dict[str, torch.Tensor]) -> dict[str, LayerAccumulator]:
        sampling = self.config.sampling
        return {g.name: LayerAccumulator(g.name, g.n_nodes, g.width, sampling, boundaries[g.name]) for g in self.groups}

    def step(
        self,
        model: LoadedModel | None,
        seqs: np.ndarray,
        accs: dict[str, LayerAccumulator],
        values: Values | None = None,
    ) -> None:
        """One main-pass batch of windows ``seqs``: forward (unless ``values`` are given: kept by the pre-pass
        or computed elsewhere), then per group, side by side, extract and update while the group's values
        are still in cache."""
        if values is not None:
            kept = values

            def source(g: NodeGroup) -> torch.Tensor:
                return kept[g.name]
        else:
            assert model is not None
            on = model
            cache = capture(on, torch.from_numpy(self.corpus.take(seqs)), self.hooks)

            def source(g: NodeGroup) -> torch.Tensor:
                return g.extract(on, cache).float().cpu()

        def work(g: NodeGroup) -> Callable[[], None]:
            return lambda: accs[g.name].update(source(g), seqs)

        run_all([work(g) for g in self._biggest_first])

    def bar(self, total: int, initial: int, desc: str) -> tqdm[Any]:
        return tqdm(
            total=total, initial=initial, desc=desc, unit="tok", unit_scale=True, file=sys.stderr,
            disable=not self._progress, dynamic_ncols=True,
        )  # fmt: skip

    def _values(self, model: LoadedModel, windows: np.ndarray) -> Values:
        return batch_values(model, self._biggest_first, self.hooks, windows)

    def values_fn(self, seqs: np.ndarray) -> Callable[[LoadedModel], Values]:
        """``batch_values`` of windows ``seqs`` as a function of the model alone (it pickles without us)."""
        return functools.partial(
            batch_values, groups=tuple(self._biggest_first), hooks=tuple(self.hooks), windows=self.corpus.take(seqs)
        )

    async def estimate_boundaries(self) -> tuple[dict[str, torch.Tensor], dict[int, Values]]:
        """The quantile pre-pass: boundaries per group, and (when the plan reuses them) the values of
        each pre-pass batch by its place in the main pass."""
        estimators = {g.name: QuantileEstimator() for g in self.groups}
        kept: dict[int, Values] = {}

        def add(values: Values) -> Values:
            for name, v in values.items():
                estimators[name].add(v.amax(dim=1))  # [batch, n]
            return values

        def step(model: LoadedModel, idx: np.ndarray) -> Values:
            return add(self._values(model, self.corpus.take(idx)))

        total = sum(len(b) for b in self.plan.prepass) * self.corpus.seq_len
        with self.bar(total, 0, "quantile pre-pass") as bar:
            for i, idx in enumerate(self.plan.prepass):
                if self.remote_model:
                    values = await asyncio.to_thread(add, await self._run(self.values_fn(idx)))
                else:
                    values = await self._run(functools.partial(step, idx=idx))
                if self.plan.reuse:
                    kept[i] = values
                bar.update(len(idx) * self.corpus.seq_len)
        return {name: est.boundaries() for name, est in estimators.items()}, kept

    async def _main_pass(
        self,
        accs: dict[str, LayerAccumulator],
        boundaries: dict[str, torch.Tensor],
        start: int,
        kept: dict[int, Values],
    ) -> None:
        """Batches ``start..`` of the plan's main pass; ``kept`` holds values the pre-pass computed."""
        seq_len, every, batches = self.corpus.seq_len, self.config.checkpoint_every_batches, self.plan.main
        last_save, done, saved_at = time.monotonic(), 0, None

        async def save(next_batch: int) -> None:
            nonlocal last_save, saved_at
            state = {name: acc.state() for name, acc in accs.items()}
            await save_checkpoint(self.store, self.run_key, Checkpoint(next_batch, boundaries, state))
            last_save, saved_at = time.monotonic(), next_batch

        initial = sum(len(b) for b in batches[:start]) * seq_len
        with self.bar(self.corpus.n_tokens, initial, "collate") as bar:
            for i in range(start, len(batches)):
                values = kept.pop(i, None)  # freed as soon as it is accumulated
                if self.remote_model:
                    values = values if values is not None else await self._run(self.values_fn(batches[i]))
                    await asyncio.to_thread(self.step, None, batches[i], accs, values)
                else:
                    await self._run(functools.partial(self.step, seqs=batches[i], accs=accs, values=values))
                bar.update(len(batches[i]) * seq_len)
                done += 1
                due = every is not None and done % every == 0
                if not self.live and (due or time.monotonic() - last_save > self.config.checkpoint_every_s):
                    await save(i + 1)
        if saved_at is not None and saved_at != len(batches):
            await save(len(batches))  # a run that was worth checkpointing resumes straight to writing

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
            if not self.live:
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
            "prepass_reused": self.plan.reuse,
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
    remote_model: bool = False,
    progress: bool = False,
    live: bool = False,
) -> list[DatasetSpec]:
    """Build (see ``DatasetBuilder``); returns one ``DatasetSpec`` per kind."""
    builder = DatasetBuilder(
        store, model, corpus, kinds, layers, config, run_on_model=run_on_model, remote_model=remote_model,
        progress=progress, live=live,
    )  # fmt: skip
    return await builder.run()
