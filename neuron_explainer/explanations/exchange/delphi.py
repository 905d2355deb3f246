"""delphi's per-latent result files (EleutherAI/delphi), both ways.

A delphi run folder holds ``explanations/{module}_latent{index}.txt`` (the explanation as a JSON string)
and ``scores/{scorer}/{module}_latent{index}.txt`` (a JSON list, one object per example). The classifier
scorers (``detection``, ``fuzz``) write ``{"str_tokens", "activations", "distance", "activating",
"prediction", "probability", "correct"}`` per example; ``embedding`` writes ``{"text", "distance",
"similarity"}`` (we add ``"activating"``, since the distance alone cannot always tell, and, in every row,
``"source"`` and the tokens, so our own files round-trip exactly; delphi's readers pick their keys). ``distance`` is the
quantile an activating example was drawn from (0 = highest) and -1 for random non-activating ones.

Our module names are ``layers.{layer}.{kind or autoencoder}``; importing a foreign run takes ``kind`` (and
``model``) for modules named ``layers.{layer}`` or anything else ending in the layer number. Our
``fuzzing`` is delphi's ``fuzz``. Simulation scores are not exported (delphi's simulator files hold its own
simulator's objects). On import the metrics are recomputed from the examples (examples delphi failed to
parse, ``prediction`` null, are left out).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from neuron_explainer.errors import BadInput
from neuron_explainer.explanations.classification import ClassifiedExample, ClassifiedExplanation, ScoredClassification
from neuron_explainer.explanations.exchange.neuronpedia import Store
from neuron_explainer.explanations.exchange.rows import StoredRow
from neuron_explainer.explanations.metrics import binary_metrics, roc_auc
from neuron_explainer.nodes import NodeId

OURS_TO_DELPHI = {"detection": "detection", "fuzzing": "fuzz", "embedding": "embedding"}
DELPHI_TO_OURS = {v: k for k, v in OURS_TO_DELPHI.items()}
_STEM = re.compile(r"^(?P<module>.+)_latent(?P<index>\d+)$")
_LAYER = re.compile(r"(?:^|\.)layers?\.(?P<layer>\d+)(?:\.(?P<kind>.+))?$")


def module_name(node: NodeId) -> str:
    return f"layers.{node.layer}.{node.autoencoder or node.kind.value}"


N_BINS = 5
"""Our quantile bins (``collation``): 0 is the lowest; delphi's quantile 0 is the highest."""


def _distance(source: str, label: int) -> int:
    if not label:
        return -1
    if source.startswith("quantile:"):
        return N_BINS - int(source.split(":", 1)[1])
    return 0


def _example_json(method: str, x: ClassifiedExample) -> dict[str, Any]:
    if method == "embedding":
        return {
            "text": "".join(x.tokens),
            "distance": _distance(x.source, x.label),
            "similarity": x.probability,
            "activating": bool(x.label),
            "str_tokens": x.tokens,
            "activations": x.activations,
            "source": x.source,
        }
    return {
        "str_tokens": x.tokens,
        "activations": x.activations,
        "distance": _distance(x.source, x.label),
        "activating": bool(x.label),
        "prediction": None if x.prediction is None else bool(x.prediction),
        "probability": x.probability,
        "correct": None if x.prediction is None else x.prediction == x.label,
        "highlighted": x.highlighted,
        "source": x.source,
    }


def export_delphi(rows: Sequence[StoredRow], out: Path) -> list[Path]:
    """One explanation per latent (the text with the most classifier scores, then the best); returns files."""
    per_node: dict[NodeId, dict[str, list[StoredRow]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if isinstance(row.raw, ClassifiedExplanation):
            per_node[row.node][row.text].append(row)
    files = []
    for node, texts in sorted(per_node.items(), key=lambda kv: str(kv[0])):
        text, chosen = max(texts.items(), key=lambda kv: (len(kv[1]), max(r.score or 0.0 for r in kv[1]), kv[0]))
        stem = f"{module_name(node)}_latent{node.index}"
        (out / "explanations").mkdir(parents=True, exist_ok=True)
        path = out / "explanations" / f"{stem}.txt"
        path.write_text(json.dumps(text, ensure_ascii=False))
        files.append(path)
        for row in chosen:
            assert isinstance(row.raw, ClassifiedExplanation)
            scored = row.raw.scored_classification
            folder = out / "scores" / OURS_TO_DELPHI[scored.method]
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{stem}.txt"
            path.write_text(json.dumps([_example_json(scored.method, x) for x in scored.examples], ensure_ascii=False))
            files.append(path)
    return files


def _source(item: dict[str, Any], activating: bool) -> str:
    if isinstance(item.get("source"), str):  # ours
        return str(item["source"])
    distance = item.get("distance")
    if not activating:
        return "random"
    return "top" if distance in (0, None) else f"quantile:{max(0, N_BINS - int(distance))}"


def scored_from_delphi(method: str, items: list[dict[str, Any]]) -> ScoredClassification:
    """Our row from delphi's per-example objects, metrics recomputed (balanced accuracy / AUC)."""
    examples = []
    for item in items:
        if method == "embedding":
            tokens = list(item.get("str_tokens") or [item["text"]])
            activating = bool(item["activating"]) if "activating" in item else float(item["distance"]) >= 0
            activations = list(item.get("activations") or [0.0] * len(tokens))
            source = _source(item, activating)
            examples.append(
                ClassifiedExample(tokens, activations, source, int(activating), None, float(item["similarity"]))
            )
            continue
        if item.get("prediction") is None:
            continue
        activating = bool(item["activating"])
        highlighted = item.get("highlighted")
        examples.append(
            ClassifiedExample(
                list(item["str_tokens"]), [float(a) for a in item["activations"]],
                _source(item, activating), int(activating), int(bool(item["prediction"])),
                item.get("probability"), list(highlighted) if isinstance(highlighted, list) else None,
            )
        )  # fmt: skip
    if method == "embedding":
        auc = roc_auc([x.label for x in examples], [x.probability or 0.0 for x in examples])
        return ScoredClassification(method, examples, auc, roc_auc=auc)
    m = binary_metrics([x.label for x in examples], [x.prediction or 0 for x in examples])
    return ScoredClassification(
        method, examples, m.balanced_accuracy, m.balanced_accuracy, m.precision, m.recall, m.f1, None
    )


async def import_delphi(
    run: Path,
    store_row: Store,
    parse_node: Callable[[str], NodeId],
    *,
    model: str,
    kind: str | None = None,
) -> int:
    """Store every scored latent of a delphi run folder; returns the rows stored."""
    explanations = run / "explanations"
    if not explanations.is_dir():
        raise BadInput(f"{run} is not a delphi run folder (no explanations/)", path=str(run))
    stored = 0
    for file in sorted(explanations.glob("*.txt")):
        match = _STEM.match(file.stem)
        layer = _LAYER.search(match.group("module")) if match else None
        if match is None or layer is None:
            raise BadInput(
                f"cannot tell the layer of {file.name} (expected e.g. layers.6_latent12.txt)", file=file.name
            )
        node_kind = layer.group("kind") or kind
        if node_kind is None:
            raise BadInput(f"{file.name}: name the node kind or autoencoder (--kind)", file=file.name)
        node = parse_node(f"{model}/{node_kind}/{layer.group('layer')}/{match.group('index')}")
        text = json.loads(file.read_text())
        for delphi_name, method in DELPHI_TO_OURS.items():
            score_file = run / "scores" / delphi_name / file.name
            if score_file.is_file():
                await store_row(node, method, str(text), scored_from_delphi(method, json.loads(score_file.read_text())))
                stored += 1
    return stored
