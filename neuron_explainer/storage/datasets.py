"""The dataset registry: which blobs hold which nodes' records and explanations, relative to a data root.

The defaults reproduce the original public layout (Transformer Debugger's ``neuron_datasets.py`` and
``explanation_datasets.py``) under the root, so a mirror of ``openaipublic/neuron-explainer`` in a
folder or another container works unchanged. Datasets a user built (listed in the index blob
``neuron-explainer-datasets.json`` at the root) come *before* the defaults for the same node kind:
the user made them on purpose, so they win when both have a node.

Paths: records at ``{records_path}/{layer}/{index}.json``, explanations at
``{explanations_path}/{layer}/{index}.jsonl``. No public explanations exist for attention heads or
autoencoder latents; their ``explanations_path`` is ours, next to the records.

Explanations scored by this server's jobs go to a *per-method* dataset beside the node's own:
``{explanations_path}/by-method/{scoring method}/{layer}/{index}.jsonl`` (``method_dataset``), the
way the original's local cache kept ``cache_{dst}_{method}`` folders. The method lives in the path
because the files stay in TDB's strict format: TDB's loader passes every JSON key to its dataclass
constructors, so a ``method`` key inside the file would break it. A node no dataset holds (scored
on live records) gets ``live-explanations/{model}/{kind or autoencoder}`` (``live_dataset``).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from neuron_explainer.errors import BadInput, CorruptBlob, NotFound, UpstreamUnavailable
from neuron_explainer.models.shapes import AUTOENCODER_KINDS
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.base import BlobStore, PreconditionFailed
from neuron_explainer.storage.paths import check_path, join

INDEX_BLOB = "neuron-explainer-datasets.json"
"""At the data root: ``{"datasets": [DatasetSpec.to_json(), ...]}``, written by the dataset builder."""


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    name: str
    """Unique, readable; shown as ``provenance.dataset`` and ``Explanation.dataset``."""
    model: str
    kind: NodeKind
    autoencoder: str | None
    """Set exactly for latent kinds."""
    records_path: str
    """Folder of ``{layer}/{index}.json`` NeuronRecords, relative to the data root."""
    explanations_path: str
    """Folder of ``{layer}/{index}.jsonl`` explanation files, relative to the data root."""
    method: str | None = None
    """Set on the per-method explanation datasets jobs write (``method_dataset``): the scoring method
    every explanation in it was scored with. None for datasets of records and public explanations."""

    def __post_init__(self) -> None:
        if self.kind.is_latent != (self.autoencoder is not None):
            raise ValueError(f"dataset {self.name!r}: kind {self.kind.value} and autoencoder disagree")

    def to_json(self) -> dict[str, Any]:
        out = {**asdict(self), "kind": self.kind.value}
        if self.method is None:
            del out["method"]  # index blobs keep the builder's format
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> DatasetSpec:
        """Inverse of ``to_json``; a missing ``explanations_path`` defaults to ``explanations`` beside
        the records folder. Raises ``ValueError``/``KeyError``/``TypeError`` on bad input."""
        records = str(obj["records_path"]).strip("/")
        explanations = obj.get("explanations_path")
        if explanations is None:
            parent, _, _ = records.rpartition("/")
            explanations = join(parent, "explanations")
        autoencoder = obj.get("autoencoder")
        return cls(
            name=str(obj["name"]),
            model=str(obj["model"]),
            kind=NodeKind(obj["kind"]),
            autoencoder=None if autoencoder is None else str(autoencoder),
            records_path=records,
            explanations_path=str(explanations).strip("/"),
            method=None if obj.get("method") is None else str(obj["method"]),
        )


def record_path(spec: DatasetSpec, layer: int, index: int) -> str:
    return join(spec.records_path, str(layer), f"{index}.json")


def explanation_path(spec: DatasetSpec, layer: int, index: int) -> str:
    return join(spec.explanations_path, str(layer), f"{index}.jsonl")


METHODS_FOLDER = "by-method"


def method_dataset(spec: DatasetSpec, method: str) -> DatasetSpec:
    """Where jobs write explanations of ``spec``'s nodes scored with ``method`` (module docstring)."""
    check_path(method)
    if "/" in method:
        raise BadInput(f"method name {method!r} cannot be a folder name", method=method)
    return replace(
        spec,
        name=f"{spec.name}/{METHODS_FOLDER}/{method}",
        explanations_path=join(spec.explanations_path, METHODS_FOLDER, method),
        method=method,
    )


def live_dataset(node: NodeId) -> DatasetSpec:
    """The explanation dataset of a node no dataset holds (jobs scored it on live records)."""
    middle = node.autoencoder if node.autoencoder is not None else node.kind.value
    folder = join("live-explanations", node.model, middle)
    return DatasetSpec(f"{node.model}/{middle}/live", node.model, node.kind, node.autoencoder, folder, folder)


def _latent(ae: str, folder: str) -> DatasetSpec:
    base = f"gpt2_small/autoencoder_latent/{folder}"
    return DatasetSpec(
        f"gpt2-small/{ae}", "gpt2-small", AUTOENCODER_KINDS[ae], ae,
        f"{base}/collated-activations", f"{base}/explanations",
    )  # fmt: skip


DEFAULT_DATASETS: tuple[DatasetSpec, ...] = (
    DatasetSpec("gpt2-xl/mlp_post_act", "gpt2-xl", NodeKind.MLP_NEURON, None,
                "data/collated-activations", "data/explanations"),
    DatasetSpec("gpt2-small/mlp_post_act", "gpt2-small", NodeKind.MLP_NEURON, None,
                "gpt2_small_data/collated-activations", "gpt2_small_data/explanations"),
    DatasetSpec("gpt2-small/attn_write_norm", "gpt2-small", NodeKind.ATTENTION_HEAD, None,
                "gpt2_small/attn_write_norm/collated-activations-by-token-pair",
                "gpt2_small/attn_write_norm/explanations"),
    _latent("ae-mlp-post-act-v1", "mlp_post_act_v1"),
    _latent("ae-resid-delta-mlp-v1", "resid_delta_mlp_v1"),
    _latent("ae-mlp-post-act-v4", "mlp_post_act_v4"),
    _latent("ae-resid-delta-mlp-v4", "resid_delta_mlp_v4"),
    _latent("ae-resid-delta-attn-v4", "resid_delta_attn_v4"),
)  # fmt: skip
"""The public layout (reference §2.5-2.6). Not included: the per-token-pair attention-latent records
(``.../resid_delta_attn_v4/collated-activations-by-token-pair``), which are a second view of the same
latents rather than another node kind."""


class DatasetRegistry:
    """An ordered, immutable list of datasets; for a node, every matching dataset in order."""

    def __init__(self, datasets: Iterable[DatasetSpec]) -> None:
        self._datasets = tuple(datasets)
        names = [d.name for d in self._datasets]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate dataset names: {duplicates}")
        self._by_name = {d.name: d for d in self._datasets}

    @classmethod
    def default(cls) -> DatasetRegistry:
        return cls(DEFAULT_DATASETS)

    @property
    def datasets(self) -> tuple[DatasetSpec, ...]:
        return self._datasets

    def all(self) -> list[DatasetSpec]:
        return list(self._datasets)

    def models(self) -> list[str]:
        """Models some dataset covers, in registry order."""
        return list(dict.fromkeys(d.model for d in self._datasets))

    def get(self, name: str) -> DatasetSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise NotFound(f"no dataset named {name!r}", dataset=name, known=sorted(self._by_name)) from None

    def datasets_for(self, node: NodeId) -> list[DatasetSpec]:
        return [
            d
            for d in self._datasets
            if d.model == node.model and d.kind is node.kind and d.autoencoder == node.autoencoder
        ]

    def explanation_datasets(self, node: NodeId, methods: Sequence[str] = ()) -> list[DatasetSpec]:
        """Where the node's explanations may be: each of its datasets (or its ``live_dataset`` when it
        has none), then the per-method datasets of each for ``methods``."""
        bases = self.datasets_for(node) or [live_dataset(node)]
        return [*bases, *(method_dataset(b, m) for b in bases for m in methods)]

    def autoencoder_kinds(self) -> dict[str, NodeKind]:
        """Known autoencoder names (the originals plus any a dataset mentions) → their latents' kind."""
        kinds = dict(AUTOENCODER_KINDS)
        for d in self._datasets:
            if d.autoencoder is not None:
                kinds[d.autoencoder] = d.kind
        return kinds

    def with_datasets(self, first: Iterable[DatasetSpec]) -> DatasetRegistry:
        """A registry with ``first`` in front; a dataset of the same name as one of ours replaces it."""
        first = list(first)
        names = {d.name for d in first}
        return DatasetRegistry([*first, *(d for d in self._datasets if d.name not in names)])

    async def with_index(self, store: BlobStore) -> DatasetRegistry:
        """Add the datasets listed in the store's index blob (if any) in front of ours.

        A missing index is normal (a plain mirror of the public data); a malformed one raises
        ``CorruptBlob`` naming it rather than silently hiding the user's datasets.
        """
        data = await store.get(INDEX_BLOB)
        if data is None:
            return self
        return self.with_datasets(decode_index(data, blob=f"{store.location.rstrip('/')}/{INDEX_BLOB}"))


def decode_index(data: bytes, blob: str) -> list[DatasetSpec]:
    try:
        obj = json.loads(data)
        specs = [DatasetSpec.from_json(d) for d in obj["datasets"]]
        DatasetRegistry(specs)  # checks names are unique
    except (ValueError, KeyError, TypeError) as e:
        raise CorruptBlob(f"dataset index {blob} does not parse: {e}", blob=blob) from e
    return specs


def encode_index(datasets: Iterable[DatasetSpec]) -> bytes:
    return (json.dumps({"datasets": [d.to_json() for d in datasets]}, indent=1) + "\n").encode()


async def register_dataset(store: BlobStore, spec: DatasetSpec, *, attempts: int = 20) -> None:
    """Add ``spec`` to the store's index (replacing a dataset of the same name), with an ETag
    compare-and-swap so concurrent builders never drop each other's entries."""
    blob = f"{store.location.rstrip('/')}/{INDEX_BLOB}"
    for _ in range(attempts):
        found = await store.get_with_etag(INDEX_BLOB)
        current = decode_index(found[0], blob) if found else []
        updated = [*(d for d in current if d.name != spec.name), spec]
        try:
            await store.put(INDEX_BLOB, encode_index(updated), if_match=found[1] if found else "")
            return
        except PreconditionFailed:
            await asyncio.sleep(random.uniform(0, 0.05))
    raise UpstreamUnavailable(f"dataset index {blob} kept changing; gave up after {attempts} tries", blob=blob)
