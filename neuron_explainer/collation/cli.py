"""``neuron-explainer collate``: build activation datasets from a corpus (``main(argv) -> int``).

Everything that can be checked cheaply is checked before the model loads or a forward runs: the
settings, the output (a probe write), the corpus (exists, readable, not empty), the kinds and layers.
An interrupted run (Ctrl-C, a crash, a lost machine) is resumed by running the same command again.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from neuron_explainer.collation.builder import CollationConfig, DatasetBuilder, check_writable
from neuron_explainer.collation.corpus import Corpus, check_corpus_path
from neuron_explainer.collation.groups import check_layers, parse_kinds
from neuron_explainer.errors import BadInput, NeuronExplainerError
from neuron_explainer.models.model_registry import list_autoencoder_names, load_model
from neuron_explainer.models.shapes import KNOWN_SHAPES
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.locations import open_store


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parser() -> argparse.ArgumentParser:
    d = CollationConfig()
    p = argparse.ArgumentParser(
        prog="neuron-explainer collate",
        description="Stream a corpus through a model and write one TDB NeuronRecord per node "
        "(top-K, random and per-quantile samples, moments) plus dataset metadata and an index entry.",
    )
    p.add_argument("--model_name", required=True, help="tiny-gpt2, gpt2-small, ... or a local HF checkpoint")
    p.add_argument("--mlp_autoencoder_name", default=None)
    p.add_argument("--attn_autoencoder_name", default=None)
    p.add_argument("--corpus", required=True, help="a .txt file, a folder of .txt files, or .jsonl")
    p.add_argument("--text_field", default="text", help="JSONL field holding the text (default: text)")
    p.add_argument("--out", required=True, help="output location: folder, file://, az://, http(s)://")
    p.add_argument(
        "--kinds",
        default="mlp_neuron",
        help="comma-separated: mlp_neuron, attention_head, <autoencoder name>",
    )
    p.add_argument("--layers", type=_int_list, default=None, help="comma-separated layers (default: all)")
    p.add_argument("--top_k", type=int, default=d.top_k)
    p.add_argument("--random_k", type=int, default=d.random_k)
    p.add_argument("--quantile_k", type=int, default=d.quantile_k, help="records per quantile bin")
    p.add_argument("--seq_len", type=int, default=d.seq_len)
    p.add_argument("--batch_size", type=int, default=d.batch_size)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--quantile_windows", type=int, default=d.quantile_windows)
    p.add_argument("--checkpoint_every_s", type=float, default=d.checkpoint_every_s)
    p.add_argument(
        "--reuse_prepass_mb",
        type=int,
        default=d.reuse_prepass_bytes >> 20,
        help="keep the quantile pre-pass's values for the main pass when they fit in this many MiB "
        "(saves a second forward of those windows; 0: never)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars on stderr")
    return p


def _precheck_kinds(args: argparse.Namespace) -> None:
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


async def _run(args: argparse.Namespace) -> int:
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
        model = await asyncio.to_thread(
            load_model,
            args.model_name,
            device=args.device,
            mlp_autoencoder=args.mlp_autoencoder_name,
            attn_autoencoder=args.attn_autoencoder_name,
        )
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
            f"[{corpus.hash[:12]}] through {model.name} on {model.device}: "
            f"{', '.join(k.segment for k in kinds)} at layers {layers} -> {store.location}; quantile "
            f"pre-pass over {sum(len(b) for b in builder.plan.prepass)} windows, "
            f"{'kept for' if builder.plan.reuse else 'run again in'} the main pass",
            file=sys.stderr,
        )
        specs = await builder.run()
    finally:
        await store.close()
    for spec in specs:
        print(f"{spec.name}\t{spec.records_path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except NeuronExplainerError as e:
        print(f"neuron-explainer collate: error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "neuron-explainer collate: interrupted; run the same command again to resume from the last "
            "checkpoint",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
