"""Results of the example-classifying scorers (``detection``, ``fuzzing``, ``embedding``), as stored.

These are not TDB's: its formats only hold simulations. A node's rows for these methods live in the
same per-method folders as the others (``by-method/{method}/{layer}/{index}.jsonl``, one JSON line),
as a ``ClassificationResults`` object (``explanations.classification_codec``), so TDB's own loader is
never pointed at them by the folders it knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ClassifiedExample:
    """One example a scorer judged: a record, what it is, what the scorer said."""

    tokens: list[str]
    activations: list[float]
    """The node's values on the record (``[n_tokens]``; heads: flattened token pairs)."""
    source: str
    """Where it came from: ``top`` (valid split of the top records), ``quantile:{bin}``, ``random``."""
    label: int
    """1 for a positive: an activating record (detection, embedding) or a correct highlight (fuzzing)."""
    prediction: int | None
    """The LLM's answer, 1 or 0 (detection, fuzzing); None for embedding."""
    probability: float | None = None
    """Embedding: cosine similarity of the record's text to the explanation; None otherwise."""
    highlighted: list[int] | None = None
    """Fuzzing: positions of the tokens shown as ``<<marked>>``."""


@dataclass(frozen=True, slots=True)
class ScoredClassification:
    method: str
    examples: list[ClassifiedExample]
    score: float | None
    """The headline: balanced accuracy (detection, fuzzing) or ROC-AUC (embedding)."""
    balanced_accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1_score: float | None = None
    roc_auc: float | None = None


@dataclass(frozen=True, slots=True)
class ClassifiedExplanation:
    explanation: str
    scored_classification: ScoredClassification


@dataclass(frozen=True, slots=True)
class ClassificationResults:
    """Every classifier-scored explanation of one node (for one method's folder)."""

    layer: int
    index: int
    scored_explanations: list[ClassifiedExplanation] = field(default_factory=list)
