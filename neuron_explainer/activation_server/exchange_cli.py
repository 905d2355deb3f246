"""``neuron-explainer export|import``: explanations and their scores in Neuronpedia's or delphi's format.

    neuron-explainer export --format neuronpedia --data_root ./var/store --out ./export [--model tiny-gpt2]
    neuron-explainer import --format delphi --data_root ./var/store --input ./delphi-run --model gpt2-small \\
        --kind ae-resid-delta-mlp-v4

Imported rows are stored as jobs store theirs (``by-method/{method}``), and added to the search index when
the embedding model is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import sys
from collections.abc import Sequence
from pathlib import Path

from neuron_explainer.errors import NeuronExplainerError
from neuron_explainer.explanations.embeddings import SentenceEmbedder, embedding_package_installed
from neuron_explainer.explanations.exchange import (
    export_delphi,
    export_neuronpedia,
    import_delphi,
    import_neuronpedia,
    stored_rows,
)
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.explanations.protocols import Scored, headline_score
from neuron_explainer.explanations.search_index import ExplanationIndex, IndexEntry
from neuron_explainer.jobs.persist import ExplanationWriter, with_result
from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.datasets import DatasetRegistry, live_dataset
from neuron_explainer.storage.locations import open_store
from neuron_explainer.storage.reader import RecordReader


def _parser(verb: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"neuron-explainer {verb}", description=__doc__.split("\n\n")[0])
    p.add_argument("--format", choices=["neuronpedia", "delphi"], required=True)
    p.add_argument("--data_root", required=True, help="the store (any --data_root form of the server)")
    p.add_argument("--model", default=None, help="export: only this model; import: the model the rows are of")
    if verb == "export":
        p.add_argument("--out", required=True, type=Path, help="folder to write into")
    else:
        p.add_argument("--input", required=True, type=Path, help="a .jsonl.gz file or folder, or a delphi run folder")
        p.add_argument("--kind", default=None, help="delphi: the node kind or autoencoder of its modules")
        p.add_argument(
            "--source_map", default="", help="neuronpedia: comma-separated source=kind pairs, e.g. res-jb=ae-mine"
        )
    return p


async def _registry(data_root: str) -> tuple[RecordReader, DatasetRegistry]:
    store = open_store(data_root)
    registry = await DatasetRegistry.default().with_index(store)
    return RecordReader(store, registry, explanation_methods=MethodRegistry.scorer_names()), registry


async def run_export(args: argparse.Namespace) -> int:
    reader, registry = await _registry(args.data_root)
    try:
        datasets = [d for d in registry.all() if args.model is None or d.model == args.model]
        rows = await stored_rows(reader.store, datasets)
        files = export_neuronpedia(rows, args.out) if args.format == "neuronpedia" else export_delphi(rows, args.out)
    finally:
        await reader.store.close()
    print(f"exported {len(rows)} explanation rows to {len(files)} files under {args.out}")
    return 0


async def run_import(args: argparse.Namespace) -> int:
    reader, registry = await _registry(args.data_root)
    embedder = SentenceEmbedder() if embedding_package_installed() else None
    index = ExplanationIndex(reader.store, embedder) if embedder is not None else None
    writer = ExplanationWriter(reader)
    entries: list[IndexEntry] = []

    async def store_row(node: NodeId, method: str | None, text: str, scored: Scored) -> None:
        if method is None:  # the dataset's own explanation file, as public explanations are kept
            dataset = (registry.datasets_for(node) or [live_dataset(node)])[0]
            await reader.update_explanations(
                node, dataset, functools.partial(with_result, node=node, explanation=text, scored=scored)
            )
        else:
            dataset = await writer.store(node, method, text, scored)
        entries.append(IndexEntry(str(node), text, method or "imported", headline_score(scored), dataset.name))

    def parse(text: str) -> NodeId:
        return NodeId.parse(text, registry.autoencoder_kinds())

    try:
        if args.format == "neuronpedia":
            pairs = [p.split("=", 1) for p in args.source_map.split(",") if "=" in p]
            count = await import_neuronpedia(args.input, store_row, parse, sources=dict(pairs), model=args.model)
        else:
            if args.model is None:
                raise SystemExit("delphi import needs --model")
            count = await import_delphi(args.input, store_row, parse, model=args.model, kind=args.kind)
        if index is not None and entries:
            await index.add(entries)
    finally:
        if embedder is not None:
            await embedder.close()
        await reader.store.close()
    print(f"imported {count} explanation rows into {reader.store.location}")
    return 0


def main(verb: str, argv: Sequence[str]) -> int:
    args = _parser(verb).parse_args(list(argv))
    try:
        return asyncio.run(run_export(args) if verb == "export" else run_import(args))
    except NeuronExplainerError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
