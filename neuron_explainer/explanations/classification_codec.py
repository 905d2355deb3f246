"""JSON for ``ClassificationResults`` (our format; see ``explanations.classification``).

One line: ``{"dataclass_name": "ClassificationResults", "layer": L, "index": I, "scored_explanations":
[{"explanation", "method", "score", "balanced_accuracy", "precision", "recall", "f1_score", "roc_auc",
"examples": [{"tokens", "activations", "source", "label", "prediction", "probability", "highlighted"}]}]}``.
Every failure to read is ``CorruptBlob`` naming the blob and the JSON path.
"""

from __future__ import annotations

from typing import Any

from neuron_explainer.activations.tdb_json import TdbReader, dump_json
from neuron_explainer.explanations.classification import (
    ClassificationResults,
    ClassifiedExample,
    ClassifiedExplanation,
    ScoredClassification,
)

DATACLASS_NAME = "ClassificationResults"
_METRICS = ("score", "balanced_accuracy", "precision", "recall", "f1_score", "roc_auc")


def encode_classification(results: ClassificationResults) -> bytes:
    return dump_json(to_json(results), finite=True) + b"\n"  # the metrics refuse non-finite inputs


def to_json(results: ClassificationResults) -> dict[str, Any]:
    return {
        "dataclass_name": DATACLASS_NAME,
        "layer": results.layer,
        "index": results.index,
        "scored_explanations": [
            {
                "explanation": e.explanation,
                "method": e.scored_classification.method,
                **{name: getattr(e.scored_classification, name) for name in _METRICS},
                "examples": [_example_json(x) for x in e.scored_classification.examples],
            }
            for e in results.scored_explanations
        ],
    }


def _example_json(x: ClassifiedExample) -> dict[str, Any]:
    return {
        "tokens": x.tokens,
        "activations": x.activations,
        "source": x.source,
        "label": x.label,
        "prediction": x.prediction,
        "probability": x.probability,
        "highlighted": x.highlighted,
    }


def decode_classification(reader: TdbReader, value: Any) -> ClassificationResults:
    fields = reader.obj(value, "", (DATACLASS_NAME,), ("layer", "index", "scored_explanations"))
    items = reader.items(reader.required(fields, "scored_explanations", ""), "scored_explanations")
    return ClassificationResults(
        layer=reader.index(reader.required(fields, "layer", ""), "layer"),
        index=reader.index(reader.required(fields, "index", ""), "index"),
        scored_explanations=[_explanation(reader, item, f"scored_explanations[{k}]") for k, item in enumerate(items)],
    )


def _explanation(reader: TdbReader, value: Any, path: str) -> ClassifiedExplanation:
    fields = reader.obj(value, path, (), ("explanation", "method", "examples"))
    examples = reader.items(reader.required(fields, "examples", path), f"{path}.examples")
    metrics = {name: reader.optional_number(fields.get(name), f"{path}.{name}") for name in _METRICS}
    return ClassifiedExplanation(
        explanation=reader.string(reader.required(fields, "explanation", path), f"{path}.explanation"),
        scored_classification=ScoredClassification(
            method=reader.string(reader.required(fields, "method", path), f"{path}.method"),
            examples=[_example(reader, x, f"{path}.examples[{k}]") for k, x in enumerate(examples)],
            **metrics,
        ),
    )


def _example(reader: TdbReader, value: Any, path: str) -> ClassifiedExample:
    fields = reader.obj(value, path, (), ("tokens", "activations", "source", "label"))
    prediction = fields.get("prediction")
    highlighted = fields.get("highlighted")
    return ClassifiedExample(
        tokens=reader.strings(reader.required(fields, "tokens", path), f"{path}.tokens"),
        activations=reader.numbers(reader.required(fields, "activations", path), f"{path}.activations"),
        source=reader.string(reader.required(fields, "source", path), f"{path}.source"),
        label=reader.integer(reader.required(fields, "label", path), f"{path}.label"),
        prediction=None if prediction is None else reader.integer(prediction, f"{path}.prediction"),
        probability=reader.optional_number(fields.get("probability"), f"{path}.probability"),
        highlighted=None
        if highlighted is None
        else [
            reader.index(h, f"{path}.highlighted[{k}]")
            for k, h in enumerate(reader.items(highlighted, f"{path}.highlighted"))
        ],
    )
