"""JSON codec for ``NeuronRecord`` blobs in every variant TDB and its predecessors wrote (reference §2.2).

Reads: objects with or without ``dataclass_name``; ``NeuronId`` legacy names ``idx``/``layer`` and layer
indices stored as strings; moments (mean, variance, skewness, kurtosis) as numbers, ``NaN`` tokens,
``null`` (how orjson wrote NaN) or missing (NaN); ``random_sample_by_quantile`` / ``quantile_boundaries``
null or missing (None); missing ``random_sample`` / ``most_positive_activation_records`` (empty); unknown
extra fields (ignored). Per-token and token-pair records share this format: activations must be numbers
(``null``/NaN read as NaN, infinities rejected) and their count must fit the tokens either way, i.e. be
a valid flattened length (``attention.is_valid_flat_length``; every per-token length is one). The exact
per-token check (``len == len(tokens)``) needs the node kind and is the reader's job.

Writes the current variant, byte-for-byte what TDB's ``fast_dataclasses.dumps`` (orjson) produces for a
finite record: compact, TDB field order, ``dataclass_name`` on every object and last in it (TDB set it in
``__post_init__``, after the other fields; readers do not care about key order). One difference on purpose:
orjson writes NaN as ``null``; we write ``NaN`` like Python's ``json`` (TDB's reader uses ``json`` and
accepts it), so NaN moments round-trip as NaN.
"""

from __future__ import annotations

import math
from typing import Any

from neuron_explainer.activations.attention import attention_window
from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.activations.tdb_json import TdbReader, dump_json, floats_are_finite, parse_json

NEURON_ID_RENAMES = {"idx": "neuron_index", "layer": "layer_index"}
"""Legacy ``NeuronId`` field names (TDB ``NeuronId.field_renamed``)."""

_RECORD_FIELDS = (
    "neuron_id",
    "random_sample",
    "random_sample_by_quantile",
    "quantile_boundaries",
    "mean",
    "variance",
    "skewness",
    "kurtosis",
    "most_positive_activation_records",
)
_MOMENTS = ("mean", "variance", "skewness", "kurtosis")


def decode_neuron_id(reader: TdbReader, value: Any, path: str) -> tuple[int, int]:
    """(layer_index, neuron_index) of a TDB ``NeuronId`` in any of its variants."""
    fields = reader.obj(value, path, ("NeuronId",), ("layer_index", "neuron_index"), NEURON_ID_RENAMES)
    layer = reader.index(reader.required(fields, "layer_index", path), f"{path}.layer_index")
    index = reader.index(reader.required(fields, "neuron_index", path), f"{path}.neuron_index")
    return layer, index


def encode_neuron_id(layer: int, index: int) -> dict[str, Any]:
    return {"neuron_index": index, "layer_index": layer, "dataclass_name": "NeuronId"}


def decode_neuron_record(data: bytes, blob: str) -> NeuronRecord:
    """Decode one record blob; ``CorruptBlob`` naming ``blob`` (and the JSON path) when it is not one."""
    reader = TdbReader(blob, "neuron record")
    fields = reader.obj(parse_json(data, blob, "neuron record"), "", ("NeuronRecord",), _RECORD_FIELDS)
    layer, index = decode_neuron_id(reader, reader.required(fields, "neuron_id", ""), "neuron_id")
    by_quantile = fields.get("random_sample_by_quantile")
    boundaries = fields.get("quantile_boundaries")
    moments = [reader.number(fields.get(name), name) for name in _MOMENTS]
    return NeuronRecord(
        layer=layer,
        index=index,
        most_positive_activation_records=_records(
            reader, fields.get("most_positive_activation_records", []), "most_positive_activation_records"
        ),
        random_sample=_records(reader, fields.get("random_sample", []), "random_sample"),
        random_sample_by_quantile=None
        if by_quantile is None
        else [
            _records(reader, group, f"random_sample_by_quantile[{q}]")
            for q, group in enumerate(reader.items(by_quantile, "random_sample_by_quantile"))
        ],
        quantile_boundaries=None
        if boundaries is None
        else reader.numbers(boundaries, "quantile_boundaries", allow_inf=True),
        mean=moments[0],
        variance=moments[1],
        skewness=moments[2],
        kurtosis=moments[3],
    )


def _records(reader: TdbReader, value: Any, path: str) -> list[ActivationRecord]:
    items = reader.items(value, path)
    out = []
    for k, item in enumerate(items):
        fast = _plain_record(item)
        out.append(fast if fast is not None else _record(reader, item, f"{path}[{k}]"))
    return out


_PLAIN_KEYS = frozenset({"activations", "tokens", "dataclass_name"})
_FLOAT = frozenset({float})
_STR = frozenset({str})


def _plain_record(value: Any) -> ActivationRecord | None:
    """The common case without building paths: finite floats, string tokens, per-token or square layout.

    Returns None for anything else, which ``_record`` then checks field by field (and explains)."""
    if type(value) is not dict or not value.keys() <= _PLAIN_KEYS:
        return None
    if value.get("dataclass_name", "ActivationRecord") != "ActivationRecord":
        return None
    tokens, activations = value.get("tokens"), value.get("activations")
    if type(tokens) is not list or type(activations) is not list:
        return None
    n, m = len(tokens), len(activations)
    if m != n and 2 * m != n * (n + 1):
        return None
    if not (set(map(type, tokens)) <= _STR and set(map(type, activations)) <= _FLOAT):
        return None
    if not floats_are_finite(activations):
        return None
    return ActivationRecord(tokens=tokens, activations=activations)


def _record(reader: TdbReader, value: Any, path: str) -> ActivationRecord:
    fields = reader.obj(value, path, ("ActivationRecord",), ("tokens", "activations"))
    tokens = reader.strings(reader.required(fields, "tokens", path), f"{path}.tokens")
    activations = reader.numbers(reader.required(fields, "activations", path), f"{path}.activations")
    try:
        attention_window(len(tokens), len(activations))
    except ValueError as error:
        reader.fail(path, f"activations do not fit the tokens as per-token or token-pair values: {error}")
    return ActivationRecord(tokens=tokens, activations=activations)


def encode_neuron_record(record: NeuronRecord) -> bytes:
    """The current TDB variant (see module docstring); ``decode_neuron_record`` reads it back equal."""
    finite = True

    def encode_records(records: list[ActivationRecord]) -> list[dict[str, Any]]:
        nonlocal finite
        out = []
        for r in records:
            finite = finite and floats_are_finite(r.activations)
            out.append({"activations": r.activations, "tokens": r.tokens, "dataclass_name": "ActivationRecord"})
        return out

    moments = {name: getattr(record, name) for name in _MOMENTS}
    finite = all(math.isfinite(m) for m in moments.values())
    if record.quantile_boundaries is not None:
        finite = finite and floats_are_finite(record.quantile_boundaries)
    obj = {
        "neuron_id": encode_neuron_id(record.layer, record.index),
        "random_sample": encode_records(record.random_sample),
        "random_sample_by_quantile": None
        if record.random_sample_by_quantile is None
        else [encode_records(group) for group in record.random_sample_by_quantile],
        "quantile_boundaries": record.quantile_boundaries,
        **moments,
        "most_positive_activation_records": encode_records(record.most_positive_activation_records),
        "dataclass_name": "NeuronRecord",
    }
    return dump_json(obj, finite=finite)
