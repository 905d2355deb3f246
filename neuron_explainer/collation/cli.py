"""``neuron-explainer collate``: build activation datasets from a corpus (``main(argv) -> int``).

Everything that can be checked cheaply is checked before the model loads or a forward runs: the
settings, the output (a probe write), the corpus (exists, readable, not empty), the kinds and layers.
An interrupted run (Ctrl-C, a crash, a lost machine) is resumed by running the same command again.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuron_explainer.cli_flags import add_settings_flags, settings_from_args
from neuron_explainer.collation.builder import CollationConfig, Collect, DatasetBuilder, check_writable
from neuron_explainer.collation.corpus import Corpus, check_corpus_path
from neuron_explainer.collation.groups import check_layers, parse_kinds
from neuron_explainer.errors import BadInput, NeuronExplainerError
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.model_registry import list_autoencoder_names, load_model
from neuron_explainer.models.shapes import KNOWN_SHAPES
from neuron_explainer.settings import required, setting
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetSpec
from neuron_explainer.storage.locations import open_store

_D = CollationConfig()
_SAMPLING = "what each record keeps"
_RUN = "how the run goes"
_RAY = "Ray (pip install 'neuron-explainer[ray]')"


@dataclass(frozen=True)
class CollateSettings:
    """Every flag of ``neuron-explainer collate``; defaults come from ``CollationConfig`` (one place)."""

    model_name: str = required("tiny-gpt2, gpt2-small, ... or a local HF checkpoint folder")
    corpus: str = required("a .txt file, a folder of .txt files, or .jsonl")
    out: str = required("output location: folder, file://, az://, http(s):// (as the server's --data_root)")
    mlp_autoencoder_name: str | None = setting(None, "autoencoder on the MLP (its latents become a kind)")
    attn_autoencoder_name: str | None = setting(None, "autoencoder on attention (its latents become a kind)")
    text_field: str = setting("text", "JSONL field holding the text")
    kinds: str = setting("mlp_neuron", "comma-separated: mlp_neuron, attention_head, <autoencoder name>")
    layers: tuple[int, ...] | None = setting(None, "comma-separated layers", shown="all")
    top_k: int = setting(_D.top_k, "top-activating records kept per node (exact)", group=_SAMPLING)
    random_k: int = setting(_D.random_k, "uniformly sampled records per node", group=_SAMPLING)
    quantile_k: int = setting(_D.quantile_k, "records per quantile bin", group=_SAMPLING)
    seq_len: int = setting(_D.seq_len, "tokens per window (the corpus is cut into windows)", group=_SAMPLING)
    seed: int = setting(_D.seed, "seed of the random and quantile samples", group=_SAMPLING)
    quantile_windows: int = setting(
        _D.quantile_windows, "windows (spread evenly) whose maxima fix the quantile boundaries", group=_SAMPLING
    )
    batch_size: int = setting(_D.batch_size, "windows per forward pass", group=_RUN)
    checkpoint_every_s: float = setting(
        _D.checkpoint_every_s, "seconds between checkpoints (an interrupted run resumes from the last)", group=_RUN
    )
    reuse_prepass_mb: int = setting(
        _D.reuse_prepass_bytes >> 20,
        "keep the quantile pre-pass's values for the main pass when they fit in this many MiB (saves a second "
        "forward of those windows; 0: never)",
        group=_RUN,
    )
    device: str | None = setting(None, "cpu, cuda, ...", group=_RUN, shown="cuda when available")
    no_progress: bool = setting(False, "no progress bars on stderr", group=_RUN)
    ray_address: str | None = setting(
        None,
        "run the passes on this Ray cluster's workers (auto, host:port or ray://host:10001); same records",
        group=_RAY,
    )
    ray_workers: int = setting(0, "workers; 0: one per GPU, else one per CPU share", group=_RAY)
    ray_cpus_per_worker: float = setting(1.0, "CPUs each worker reserves", group=_RAY)
    ray_gpus_per_worker: float = setting(-1.0, "-1: 1 when the cluster has GPUs, else 0", group=_RAY)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neuron-explainer collate",
        description="Stream a corpus through a model and write one TDB NeuronRecord per node "
        "(top-K, random and per-quantile samples, moments) plus dataset metadata and an index entry.",
    )
    add_settings_flags(p, CollateSettings, default_group="what to collate")
    return p


def parse_args(argv: Sequence[str] | None = None) -> CollateSettings:
    argv = list(sys.argv[1:] if argv is None else argv)
    args: CollateSettings = settings_from_args(CollateSettings, parser().parse_args(argv), argv)
    return args


def _precheck_kinds(args: CollateSettings) -> None:
    """Kind names and layer bounds that can be judged without loading the model."""
    given = [a for a in (args.mlp_autoencoder_name, args.attn_autoencoder_name) if a]
    known = list_autoencoder_names(args.model_name) if args.model_name in KNOWN_SHAPES else None
    for name in given:
        if known is not None and name not in known:
            raise BadInput(
                f"no autoencoder {name!r} for {args.model_name} (known: {', '.join(known) or 'none'})",
                argument="autoencoder",
            )
    for kind in (k.strip() for k in args.kinds.split(",") if k.strip()):
        if kind not in ("mlp_neuron", "attention_head", *given):
            raise BadInput(
                f"unknown node kind {kind!r} (choose from mlp_neuron, attention_head"
                + "".join(f", {g}" for g in given)
                + "; an autoencoder's latents need --mlp_autoencoder_name / --attn_autoencoder_name)",
                argument="kinds",
                kind=kind,
            )
    shape = KNOWN_SHAPES.get(args.model_name)
    if shape is not None and args.layers is not None:
        bad = [layer for layer in args.layers if not 0 <= layer < shape.n_layers]
        if bad:
            raise BadInput(
                f"layer {bad[0]} out of range: {shape.name} has {shape.n_layers} layers",
                argument="layers",
                bound=shape.n_layers,
            )


async def _run(args: CollateSettings) -> int:
    if args.reuse_prepass_mb < 0:
        mb = args.reuse_prepass_mb
        raise BadInput(f"--reuse_prepass_mb must be at least 0, got {mb}", argument="reuse_prepass_mb")
    config = CollationConfig(
        seq_len=args.seq_len, top_k=args.top_k, random_k=args.random_k, quantile_k=args.quantile_k,
        seed=args.seed, batch_size=args.batch_size, quantile_windows=args.quantile_windows,
        checkpoint_every_s=args.checkpoint_every_s, reuse_prepass_bytes=args.reuse_prepass_mb << 20,
    )  # fmt: skip
    config.check()
    _precheck_kinds(args)
    check_corpus_path(args.corpus, args.text_field)
    store: BlobStore = open_store(args.out)
    try:
        await check_writable(store)
        async with _model(args) as (model, collect, where):
            specs = await _build(args, config, store, model, collect, where)
    finally:
        await store.close()
    for spec in specs:
        print(f"{spec.name}\t{spec.records_path}")
    return 0


@contextlib.asynccontextmanager
async def _model(args: CollateSettings) -> AsyncIterator[tuple[LoadedModel, Collect | None, str]]:
    """The model to plan with, how to collect (``None``: here) and where the forwards run."""
    if not args.ray_address:
        model = await asyncio.to_thread(
            load_model,
            args.model_name,
            device=args.device,
            mlp_autoencoder=args.mlp_autoencoder_name,
            attn_autoencoder=args.attn_autoencoder_name,
        )
        yield model, None, model.device
        return
    from neuron_explainer.collation.ray_collate import RayCollation, WorkerSpec, default_workers, start_workers
    from neuron_explainer.inference.ray_backend import connect, disconnect
    from neuron_explainer.models.facts import model_view

    await asyncio.to_thread(connect, args.ray_address, 5.0)
    workers: list[Any] = []
    try:
        count, gpus = args.ray_workers, max(args.ray_gpus_per_worker, 0.0)
        if count <= 0:
            count, gpus = await asyncio.to_thread(default_workers, args.ray_cpus_per_worker, args.ray_gpus_per_worker)
        spec = WorkerSpec(args.model_name, args.mlp_autoencoder_name, args.attn_autoencoder_name, args.device)
        workers = await asyncio.to_thread(start_workers, spec, count, args.ray_cpus_per_worker, gpus)
        facts = await _ray_call(workers[0].facts.remote())
        view = await asyncio.to_thread(model_view, facts)
        where = f"{count} Ray worker(s) at {args.ray_address} ({facts.device})"
        yield view, RayCollation(workers).collect, where
    finally:
        await asyncio.to_thread(_stop_workers, workers)
        await asyncio.to_thread(disconnect)


async def _ray_call(ref: Any) -> Any:
    """A worker's answer; its typed error (a model that cannot load, say) as that error, not a Ray wrapper."""
    from ray.exceptions import RayTaskError

    try:
        return await ref
    except RayTaskError as exc:
        cause = exc.as_instanceof_cause() if hasattr(exc, "as_instanceof_cause") else exc
        if isinstance(cause, NeuronExplainerError):
            raise cause from None
        raise


def _stop_workers(workers: list[Any]) -> None:
    import ray

    for worker in workers:
        ray.kill(worker)


async def _build(
    args: CollateSettings,
    config: CollationConfig,
    store: BlobStore,
    model: LoadedModel,
    collect: Collect | None,
    where: str,
) -> list[DatasetSpec]:
    kinds = parse_kinds(args.kinds, model)
    layers = check_layers(args.layers if args.layers is not None else range(model.shape.n_layers), model)
    config.check(model)
    corpus = await asyncio.to_thread(
        Corpus.read,
        Path(args.corpus),
        model.to_tokens,
        seq_len=config.seq_len,
        text_field=args.text_field,
    )
    builder = DatasetBuilder(store, model, corpus, kinds, layers, config, progress=not args.no_progress)
    print(
        f"collating {corpus.n_windows} windows ({corpus.n_tokens} tokens) of {corpus.description} "
        f"[{corpus.hash[:12]}] through {model.name} on {where}: "
        f"{', '.join(k.segment for k in kinds)} at layers {layers} -> {store.location}; quantile "
        f"pre-pass over {sum(len(b) for b in builder.plan.prepass)} windows, "
        f"{'kept for' if builder.plan.reuse else 'run again in'} the main pass",
        file=sys.stderr,
    )
    return await builder.run(collect=collect)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except NeuronExplainerError as e:
        print(f"neuron-explainer collate: error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "neuron-explainer collate: interrupted; run the same command again to resume from the last checkpoint",
            file=sys.stderr,
        )
        return 130
    except Exception as e:
        if type(e).__module__.startswith("ray."):  # a lost worker or node: the checkpoint survives it
            print(
                f"neuron-explainer collate: error: the Ray cluster failed ({type(e).__name__}: {e}); run the same "
                "command again to resume from the last checkpoint",
                file=sys.stderr,
            )
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
