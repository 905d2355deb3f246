"""JSON codec for explanation blobs (``{layer}/{index}.jsonl``, reference §2.3), every legacy variant.

A blob holds exactly one non-empty line (whitespace-only lines, e.g. a trailing ``\\r\\n``, do not count):
a ``NeuronSimulationResults`` or an ``AttentionSimulationResults``. Which one is read from
``dataclass_name`` or, in files without it, from the id field (``neuron_id`` vs ``attention_head_id``).

Legacy variants read: ``scored_explanation_or_baseline_list`` (-> ``scored_explanations``), class
``ScoredExplanationOrBaseline`` with ``explanation_or_baseline`` (-> ``ScoredExplanation.explanation``),
``simulation`` (-> ``sequence_simulation``), ``unit`` (-> ``activation_scale``), the deleted
``SequenceSimulation.response`` (dropped unread), ``attention_id`` (-> ``attention_head_id``),
``NeuronId`` as ``idx``/``layer`` and string layer indices. Float fields accept numbers, ``NaN``
tokens and ``null`` (orjson's NaN): optional scores keep ``null`` as None, required floats and list
items read it as NaN. Unknown fields are ignored.

Writes the current variant with ``dataclass_name``s as one line plus ``\\n``; NaN as ``NaN`` (see
``activations.codec``). ``method`` is written only when set (see ``results``).
"""

from __future__ import annotations

import math
from typing import Any

from neuron_explainer.activations.codec import decode_neuron_id, encode_neuron_id
from neuron_explainer.activations.tdb_json import TdbReader, dump_json, floats_are_finite, parse_json
from neuron_explainer.explanations.classification import ClassificationResults
from neuron_explainer.explanations.classification_codec import (
    DATACLASS_NAME as CLASSIFICATION,
)
from neuron_explainer.explanations.classification_codec import (
    decode_classification,
    encode_classification,
)
from neuron_explainer.explanations.results import (
    ActivationScale,
    AttentionSimulation,
    AttentionSimulationResults,
    NeuronSimulationResults,
    ScoredAttentionExplanation,
    ScoredAttentionSimulation,
    ScoredExplanation,
    ScoredSequenceSimulation,
    ScoredSimulation,
    SequenceSimulation,
)

__all__ = ["AnyResults", "decode_explanations", "encode_explanations"]

_WHAT = "explanations"


AnyResults = NeuronSimulationResults | AttentionSimulationResults | ClassificationResults


def decode_explanations(data: bytes, blob: str) -> AnyResults:
    """Decode one explanations blob; ``CorruptBlob`` naming ``blob`` (and the JSON path) when malformed."""
    reader = TdbReader(blob, _WHAT)
    lines = [line for line in data.split(b"\n") if line.strip()]
    if len(lines) != 1:
        reader.fail("", f"expected exactly one non-empty line, found {len(lines)}")
    value = parse_json(lines[0], blob, _WHAT)
    name = value.get("dataclass_name") if isinstance(value, dict) else None
    if name == CLASSIFICATION:
        return decode_classification(reader, value)
    is_attention = name == "AttentionSimulationResults" or (
        name is None and isinstance(value, dict) and ("attention_head_id" in value or "attention_id" in value)
    )
    if is_attention:
        return _attention_results(reader, value)
    return _neuron_results(reader, value)


def _neuron_results(reader: TdbReader, value: Any) -> NeuronSimulationResults:
    fields = reader.obj(
        value,
        "",
        ("NeuronSimulationResults",),
        ("neuron_id", "scored_explanations"),
        {"scored_explanation_or_baseline_list": "scored_explanations"},
    )
    layer, index = decode_neuron_id(reader, reader.required(fields, "neuron_id", ""), "neuron_id")
    items = reader.items(reader.required(fields, "scored_explanations", ""), "scored_explanations")
    return NeuronSimulationResults(
        layer=layer,
        index=index,
        scored_explanations=[
            _scored_explanation(reader, item, f"scored_explanations[{k}]") for k, item in enumerate(items)
        ],
    )


def _scored_explanation(reader: TdbReader, value: Any, path: str) -> ScoredExplanation:
    fields = reader.obj(
        value,
        path,
        ("ScoredExplanation", "ScoredExplanationOrBaseline"),
        ("explanation", "scored_simulation"),
        {"explanation_or_baseline": "explanation"},
    )
    simulation = fields.get("scored_simulation")
    return ScoredExplanation(
        explanation=_optional_string(reader, reader.required(fields, "explanation", path), f"{path}.explanation"),
        scored_simulation=None
        if simulation is None
        else _scored_simulation(reader, simulation, f"{path}.scored_simulation"),
        method=_optional_string(reader, fields.get("method"), f"{path}.method"),
    )


def _scored_simulation(reader: TdbReader, value: Any, path: str) -> ScoredSimulation:
    fields = reader.obj(value, path, ("ScoredSimulation",), ("scored_sequence_simulations", "ev_correlation_score"))
    items = reader.items(fields.get("scored_sequence_simulations", []), f"{path}.scored_sequence_simulations")
    return ScoredSimulation(
        scored_sequence_simulations=[
            _scored_sequence(reader, item, f"{path}.scored_sequence_simulations[{k}]") for k, item in enumerate(items)
        ],
        **_scores(reader, fields, path),
    )


def _scores(reader: TdbReader, fields: dict[str, Any], path: str) -> dict[str, float | None]:
    names = ("ev_correlation_score", "rsquared_score", "absolute_dev_explained_score")
    return {name: reader.optional_number(fields.get(name), f"{path}.{name}") for name in names}


def _scored_sequence(reader: TdbReader, value: Any, path: str) -> ScoredSequenceSimulation:
    fields = reader.obj(
        value,
        path,
        ("ScoredSequenceSimulation",),
        ("sequence_simulation", "true_activations", "ev_correlation_score"),
        {"simulation": "sequence_simulation"},
    )
    ev = reader.required(fields, "ev_correlation_score", path)
    return ScoredSequenceSimulation(
        sequence_simulation=_sequence(
            reader, reader.required(fields, "sequence_simulation", path), f"{path}.sequence_simulation"
        ),
        true_activations=reader.numbers(
            reader.required(fields, "true_activations", path), f"{path}.true_activations", allow_inf=True
        ),
        ev_correlation_score=reader.number(ev, f"{path}.ev_correlation_score"),
        rsquared_score=reader.optional_number(fields.get("rsquared_score"), f"{path}.rsquared_score"),
        absolute_dev_explained_score=reader.optional_number(
            fields.get("absolute_dev_explained_score"), f"{path}.absolute_dev_explained_score"
        ),
    )


def _sequence(reader: TdbReader, value: Any, path: str) -> SequenceSimulation:
    fields = reader.obj(
        value,
        path,
        ("SequenceSimulation",),
        ("tokens", "expected_activations", "activation_scale"),
        {"unit": "activation_scale"},
        deleted=("response",),
    )
    scale = reader.string(reader.required(fields, "activation_scale", path), f"{path}.activation_scale")
    try:
        activation_scale = ActivationScale(scale)
    except ValueError:
        reader.fail(f"{path}.activation_scale", f"unknown activation scale {scale!r}")
    uncalibrated = fields.get("uncalibrated_simulation")
    return SequenceSimulation(
        tokens=reader.strings(reader.required(fields, "tokens", path), f"{path}.tokens"),
        expected_activations=reader.numbers(
            reader.required(fields, "expected_activations", path),
            f"{path}.expected_activations",
            allow_inf=True,
        ),
        activation_scale=activation_scale,
        distribution_values=_number_lists(reader, fields, "distribution_values", path),
        distribution_probabilities=_number_lists(reader, fields, "distribution_probabilities", path),
        uncalibrated_simulation=None
        if uncalibrated is None
        else _sequence(reader, uncalibrated, f"{path}.uncalibrated_simulation"),
    )


def _number_lists(reader: TdbReader, fields: dict[str, Any], name: str, path: str) -> list[list[float]]:
    items = reader.items(reader.required(fields, name, path), f"{path}.{name}")
    return [reader.numbers(item, f"{path}.{name}[{k}]", allow_inf=True) for k, item in enumerate(items)]


def _attention_results(reader: TdbReader, value: Any) -> AttentionSimulationResults:
    fields = reader.obj(
        value,
        "",
        ("AttentionSimulationResults",),
        ("attention_head_id", "scored_explanations"),
        {"attention_id": "attention_head_id"},
    )
    head_id = reader.required(fields, "attention_head_id", "")
    layer, index = decode_neuron_id(reader, head_id, "attention_head_id")
    items = reader.items(reader.required(fields, "scored_explanations", ""), "scored_explanations")
    return AttentionSimulationResults(
        layer=layer,
        index=index,
        scored_explanations=[
            _scored_attention_explanation(reader, item, f"scored_explanations[{k}]") for k, item in enumerate(items)
        ],
    )


def _scored_attention_explanation(reader: TdbReader, value: Any, path: str) -> ScoredAttentionExplanation:
    fields = reader.obj(value, path, ("ScoredAttentionExplanation",), ("explanation", "scored_attention_simulation"))
    simulation = fields.get("scored_attention_simulation")
    sim_path = f"{path}.scored_attention_simulation"
    return ScoredAttentionExplanation(
        explanation=_optional_string(reader, reader.required(fields, "explanation", path), f"{path}.explanation"),
        scored_attention_simulation=None if simulation is None else _scored_attention(reader, simulation, sim_path),
        method=_optional_string(reader, fields.get("method"), f"{path}.method"),
    )


def _scored_attention(reader: TdbReader, value: Any, path: str) -> ScoredAttentionSimulation:
    fields = reader.obj(value, path, ("ScoredAttentionSimulation",), ("attention_simulations", "roc_auc_score"))
    items = reader.items(fields.get("attention_simulations", []), f"{path}.attention_simulations")
    return ScoredAttentionSimulation(
        attention_simulations=[
            _attention_simulation(reader, item, f"{path}.attention_simulations[{k}]") for k, item in enumerate(items)
        ],
        roc_auc_score=reader.optional_number(fields.get("roc_auc_score"), f"{path}.roc_auc_score"),
    )


def _attention_simulation(reader: TdbReader, value: Any, path: str) -> AttentionSimulation:
    fields = reader.obj(
        value,
        path,
        ("AttentionSimulation",),
        ("tokens", "token_pair_coords", "token_pair_label", "simulation_prediction"),
    )
    coords = reader.items(reader.required(fields, "token_pair_coords", path), f"{path}.token_pair_coords")
    if len(coords) != 2:
        reader.fail(f"{path}.token_pair_coords", f"expected [query, key], got {len(coords)} items")
    i = reader.index(coords[0], f"{path}.token_pair_coords[0]")
    j = reader.index(coords[1], f"{path}.token_pair_coords[1]")
    return AttentionSimulation(
        tokens=reader.strings(reader.required(fields, "tokens", path), f"{path}.tokens"),
        token_pair_coords=(i, j),
        token_pair_label=reader.integer(reader.required(fields, "token_pair_label", path), f"{path}.token_pair_label"),
        simulation_prediction=reader.number(
            reader.required(fields, "simulation_prediction", path), f"{path}.simulation_prediction"
        ),
    )


def _optional_string(reader: TdbReader, value: Any, path: str) -> str | None:
    return None if value is None else reader.string(value, path)


# --- writing -------------------------------------------------------------------------------------------


class _Finite:
    """Tracks whether every float written so far is finite (then orjson may write the line)."""

    def __init__(self) -> None:
        self.finite = True

    def check(self, *values: float | None) -> None:
        for v in values:
            if v is not None and not math.isfinite(v):
                self.finite = False

    def check_list(self, values: list[float]) -> list[float]:
        if self.finite and not floats_are_finite(values):
            self.finite = False
        return values


def encode_explanations(results: AnyResults) -> bytes:
    """The current TDB variant as one line plus ``\\n``; ``decode_explanations`` reads it back equal."""
    if isinstance(results, ClassificationResults):
        return encode_classification(results)
    tracker = _Finite()
    if isinstance(results, NeuronSimulationResults):
        obj: dict[str, Any] = {
            "neuron_id": encode_neuron_id(results.layer, results.index),
            "scored_explanations": [_encode_scored_explanation(e, tracker) for e in results.scored_explanations],
            "dataclass_name": "NeuronSimulationResults",
        }
    else:
        obj = {
            "attention_head_id": encode_neuron_id(results.layer, results.index),
            "scored_explanations": [_encode_attention_explanation(e, tracker) for e in results.scored_explanations],
            "dataclass_name": "AttentionSimulationResults",
        }
    return dump_json(obj, finite=tracker.finite) + b"\n"


def _encode_scored_explanation(e: ScoredExplanation, tracker: _Finite) -> dict[str, Any]:
    sim = e.scored_simulation
    out: dict[str, Any] = {
        "explanation": e.explanation,
        "scored_simulation": None
        if sim is None
        else {
            "scored_sequence_simulations": [
                _encode_scored_sequence(s, tracker) for s in sim.scored_sequence_simulations
            ],
            **_encode_scores(sim, tracker),
            "dataclass_name": "ScoredSimulation",
        },
    }
    if e.method is not None:
        out["method"] = e.method
    out["dataclass_name"] = "ScoredExplanation"
    return out


def _encode_scores(s: ScoredSimulation | ScoredSequenceSimulation, tracker: _Finite) -> dict[str, float | None]:
    tracker.check(s.ev_correlation_score, s.rsquared_score, s.absolute_dev_explained_score)
    return {
        "ev_correlation_score": s.ev_correlation_score,
        "rsquared_score": s.rsquared_score,
        "absolute_dev_explained_score": s.absolute_dev_explained_score,
    }


def _encode_scored_sequence(s: ScoredSequenceSimulation, tracker: _Finite) -> dict[str, Any]:
    return {
        "sequence_simulation": _encode_sequence(s.sequence_simulation, tracker),
        "true_activations": tracker.check_list(s.true_activations),
        **_encode_scores(s, tracker),
        "dataclass_name": "ScoredSequenceSimulation",
    }


def _encode_sequence(s: SequenceSimulation, tracker: _Finite) -> dict[str, Any]:
    return {
        "tokens": s.tokens,
        "expected_activations": tracker.check_list(s.expected_activations),
        "activation_scale": s.activation_scale.value,
        "distribution_values": [tracker.check_list(v) for v in s.distribution_values],
        "distribution_probabilities": [tracker.check_list(p) for p in s.distribution_probabilities],
        "uncalibrated_simulation": None
        if s.uncalibrated_simulation is None
        else _encode_sequence(s.uncalibrated_simulation, tracker),
        "dataclass_name": "SequenceSimulation",
    }


def _encode_attention_explanation(e: ScoredAttentionExplanation, tracker: _Finite) -> dict[str, Any]:
    sim = e.scored_attention_simulation
    if sim is not None:
        tracker.check(sim.roc_auc_score, *(a.simulation_prediction for a in sim.attention_simulations))
    out: dict[str, Any] = {
        "explanation": e.explanation,
        "scored_attention_simulation": None
        if sim is None
        else {
            "attention_simulations": [
                {
                    "tokens": a.tokens,
                    "token_pair_coords": list(a.token_pair_coords),
                    "token_pair_label": a.token_pair_label,
                    "simulation_prediction": a.simulation_prediction,
                    "dataclass_name": "AttentionSimulation",
                }
                for a in sim.attention_simulations
            ],
            "roc_auc_score": sim.roc_auc_score,
            "dataclass_name": "ScoredAttentionSimulation",
        },
    }
    if e.method is not None:
        out["method"] = e.method
    out["dataclass_name"] = "ScoredAttentionExplanation"
    return out
