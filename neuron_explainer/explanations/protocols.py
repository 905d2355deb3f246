"""What the job manager asks of an explainer and of a scorer, and what a scorer returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.classification import ScoredClassification
from neuron_explainer.explanations.outcomes import OnSequence
from neuron_explainer.explanations.results import ScoredAttentionSimulation, ScoredSimulation

Scored = ScoredSimulation | ScoredAttentionSimulation | ScoredClassification


def headline_score(scored: Scored) -> float | None:
    """The score a row of this kind reports (``ev_correlation_score``, ``roc_auc_score`` or ``score``)."""
    if isinstance(scored, ScoredSimulation):
        return scored.ev_correlation_score
    if isinstance(scored, ScoredAttentionSimulation):
        return scored.roc_auc_score
    return scored.score


@dataclass(frozen=True, slots=True)
class Explained:
    """An explanation and how it was written (kept beside the stored explanation)."""

    text: str
    provenance: dict[str, object] = field(default_factory=dict)
    """E.g. ``{"few_shot": "built-in" | "dataset", "few_shot_nodes": [...], "prompt_tokens": n,
    "token_counter": "tiktoken:o200k_base" | "utf8-bytes-bound"}``; empty for methods without a prompt."""


class Explainer(Protocol):
    async def explain(self, record: NeuronRecord) -> Explained: ...


@dataclass(frozen=True, slots=True)
class ScoreOutcome:
    score: float | None
    """``ev_correlation_score`` (neurons, latents), ROC-AUC (heads; None with one class), balanced accuracy
    (detection, fuzzing) or ROC-AUC (embedding)."""
    scored: Scored


class Scorer(Protocol):
    async def score(
        self,
        explanation: str,
        record: NeuronRecord,
        *,
        max_sequences: int | None,
        on_sequence: OnSequence | None,
    ) -> ScoreOutcome: ...

    def planned_sequences(self, record: NeuronRecord, max_sequences: int | None) -> int:
        """How many ``on_sequence`` reports ``score`` will make (for progress totals); raises ``BadInput``
        when the node cannot be scored this way (so a job is refused before it exists)."""
        ...
