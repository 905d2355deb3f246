"""Turning finished accumulators into TDB ``NeuronRecord`` blobs, dataset metadata and the index entry.

Layout under the output root, per requested kind (``base = {model}/{segment}/{tag}``, where ``tag`` hashes
the corpus and the sampling settings, so datasets built differently never share a folder):

- ``{base}/collated-activations/{layer}/{index}.json`` — one record per node (``encode_neuron_record``),
  each written whole by one ``put`` (the stores write atomically), so readers never see half a record;
- ``{base}/collated-activations/metadata.json`` — how it was built, written after every record of the
  run; a later run of the same dataset on other layers merges its layers in;
- an entry in ``neuron-explainer-datasets.json`` at the root (``register_dataset``), written last.

Records list ``most_positive_activation_records`` best first, ``random_sample`` in random (key) order and
``random_sample_by_quantile`` as five bins from the lowest up, as the original datasets do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.collation.accumulators import LayerAccumulator
from neuron_explainer.collation.corpus import Corpus
from neuron_explainer.collation.groups import KindSpec
from neuron_explainer.storage.base import BlobStore, PreconditionFailed
from neuron_explainer.storage.datasets import DatasetSpec, record_path
from neuron_explainer.storage.paths import join

METADATA_BLOB = "metadata.json"
_CHUNK = 128
"""Nodes encoded per worker-thread call: bounds memory for layers of 32k latents."""


def dataset_for(model: str, spec: KindSpec, tag: str) -> DatasetSpec:
    base = join(model, spec.segment, tag)
    return DatasetSpec(
        name=base,
        model=model,
        kind=spec.kind,
        autoencoder=spec.autoencoder,
        records_path=join(base, "collated-activations"),
        explanations_path=join(base, "explanations"),
    )


class TokenStrings:
    """Token ids → strings, each id decoded once (``decode`` is e.g. ``LoadedModel.to_str_tokens``).

    The strings sit in a numpy object array indexed by id, so a batch of windows is one fancy index and
    one ``tolist`` in C (a Python loop over every token of every record was most of the write time)."""

    def __init__(self, corpus: Corpus, decode: Callable[[list[int]], list[str]]) -> None:
        self._corpus, self._decode = corpus, decode
        self._strings = np.empty(0, dtype=object)  # [max id seen + 1] str, or None where not decoded yet
        self._known = np.zeros(0, dtype=bool)

    def windows(self, seqs: np.ndarray) -> list[list[str]]:
        ids = self._corpus.take(seqs)  # [m, seq_len]
        if ids.size and int(ids.max()) >= len(self._known):
            grow = int(ids.max()) + 1 - len(self._known)
            self._strings = np.concatenate([self._strings, np.full(grow, None, dtype=object)])
            self._known = np.concatenate([self._known, np.zeros(grow, dtype=bool)])
        missing = np.unique(ids[~self._known[ids]])
        if missing.size:
            self._strings[missing] = self._decode(missing.tolist())
            self._known[missing] = True
        strings: list[list[str]] = self._strings[ids].tolist()
        return strings


def _records(strings: TokenStrings, seqs: np.ndarray, values: np.ndarray) -> list[ActivationRecord]:
    tokens = strings.windows(seqs)
    return [ActivationRecord(tokens=t, activations=v) for t, v in zip(tokens, values.tolist(), strict=True)]


def node_record(acc: LayerAccumulator, layer: int, node: int, strings: TokenStrings) -> NeuronRecord:
    s = acc.summary(node)
    return NeuronRecord(
        layer=layer,
        index=node,
        most_positive_activation_records=_records(strings, s.top_seqs, s.top_values),
        random_sample=_records(strings, s.random_seqs, s.random_values),
        random_sample_by_quantile=[
            _records(strings, q_seqs, q_values)
            for q_seqs, q_values in zip(s.quantile_seqs, s.quantile_values, strict=True)
        ],
        quantile_boundaries=s.quantile_boundaries,
        mean=s.mean,
        variance=s.variance,
        skewness=s.skewness,
        kurtosis=s.kurtosis,
    )


def _encode_nodes(
    dataset: DatasetSpec, acc: LayerAccumulator, layer: int, nodes: range, strings: TokenStrings
) -> list[tuple[str, bytes]]:
    return [(record_path(dataset, layer, n), encode_neuron_record(node_record(acc, layer, n, strings))) for n in nodes]


async def write_group_records(
    store: BlobStore,
    dataset: DatasetSpec,
    acc: LayerAccumulator,
    layer: int,
    strings: TokenStrings,
    *,
    concurrency: int,
    on_written: Callable[[int], None] = lambda n: None,
) -> None:
    """Encode (in a worker thread, a chunk at a time) and put every node's record of one group; the next
    chunk is encoded while this one's puts are in flight (one encoder at a time: ``strings`` is not
    thread-safe)."""
    semaphore = asyncio.Semaphore(concurrency)

    async def put(path: str, data: bytes) -> None:
        async with semaphore:
            await store.put(path, data)

    def encode(start: int) -> asyncio.Task[list[tuple[str, bytes]]]:
        nodes = range(start, min(start + _CHUNK, acc.n_nodes))
        return asyncio.create_task(asyncio.to_thread(_encode_nodes, dataset, acc, layer, nodes, strings))

    start, encoding = 0, (encode(0) if acc.n_nodes else None)
    try:
        while encoding is not None:
            blobs = await encoding
            start += _CHUNK
            encoding = encode(start) if start < acc.n_nodes else None
            await asyncio.gather(*(put(path, data) for path, data in blobs))
            on_written(len(blobs))
    finally:
        if encoding is not None:  # a put failed: let the encoder finish, and drop its result
            with contextlib.suppress(Exception):
                await encoding


async def write_metadata(
    store: BlobStore,
    dataset: DatasetSpec,
    metadata: dict[str, Any],
    layers: Sequence[int],
    n_nodes: dict[int, int],
) -> dict[str, Any]:
    """Write ``metadata.json``, merging the layers of an earlier run of the same dataset (ETag CAS)."""
    path = join(dataset.records_path, METADATA_BLOB)
    for _ in range(20):
        found = await store.get_with_etag(path)
        merged_nodes = {str(k): v for k, v in n_nodes.items()}
        if found is not None:
            try:
                old = json.loads(found[0])
                merged_nodes = {**{str(k): int(v) for k, v in old.get("n_nodes", {}).items()}, **merged_nodes}
            except (ValueError, AttributeError, TypeError):
                pass  # an unreadable old file is replaced
        all_layers = sorted({int(k) for k in merged_nodes} | set(layers))
        out = {
            **metadata,
            "layers": all_layers,
            "n_nodes": {str(k): merged_nodes[str(k)] for k in all_layers},
        }
        data = (json.dumps(out, indent=1, sort_keys=True) + "\n").encode()
        try:
            await store.put(path, data, if_match=found[1] if found else "")
            return out
        except PreconditionFailed:
            await asyncio.sleep(0.01)
    raise RuntimeError(f"{path} kept changing while writing dataset metadata")


def specs_by_kind(specs: Iterable[KindSpec], model: str, tag: str) -> dict[KindSpec, DatasetSpec]:
    return {spec: dataset_for(model, spec, tag) for spec in specs}
