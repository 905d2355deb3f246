"""What a job is (its inputs, hashed into its id) and what it produced."""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from neuron_explainer.explanations.protocols import Scored
from neuron_explainer.nodes import NodeId


class JobKind(enum.Enum):
    EXPLAIN = "explain"
    """Write an explanation (and score it when the spec names a scoring method)."""
    SCORE = "score"
    """Score a given explanation."""


class JobStatus(enum.Enum):
    QUEUED = "queued"
    """Waiting for one of the manager's job slots."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Stopped by a server shutdown before it ended; asking again (same inputs) resumes it, same id."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    kind: JobKind
    node: NodeId
    method: str
    """The explanation method (explain jobs) or the scoring method (score jobs)."""
    explanation: str | None = None
    """Score jobs: the text to score."""
    max_sequences: int | None = None
    score_method: str | None = None
    """Explain jobs: also score the new explanation with this method."""
    methods: tuple[str, ...] | None = None
    """Score jobs with several scoring methods: all of them, in order (``method`` is the first)."""

    @property
    def scoring_methods(self) -> tuple[str, ...]:
        if self.kind is JobKind.SCORE:
            return self.methods or (self.method,)
        return (self.score_method,) if self.score_method is not None else ()

    def key(self) -> str:
        fields: list[object] = [
            self.kind.value,
            str(self.node),
            self.method,
            self.explanation,
            self.max_sequences,
            self.score_method,
        ]
        if self.methods is not None:  # single-method jobs keep the ids they always had
            fields.append(list(self.methods))
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind.value,
            "node": str(self.node),
            "method": self.method,
            "explanation": self.explanation,
            "max_sequences": self.max_sequences,
            "score_method": self.score_method,
        }
        if self.methods is not None:
            out["methods"] = list(self.methods)
        return out

    @classmethod
    def from_json(cls, row: dict[str, object], parse_node: Callable[[str], NodeId]) -> JobSpec:
        max_sequences = row.get("max_sequences")
        methods = row.get("methods")
        return cls(
            JobKind(row["kind"]),
            parse_node(str(row["node"])),
            str(row["method"]),
            None if row.get("explanation") is None else str(row["explanation"]),
            int(max_sequences) if isinstance(max_sequences, int) else None,
            None if row.get("score_method") is None else str(row["score_method"]),
            tuple(str(m) for m in methods) if isinstance(methods, list) else None,
        )


@dataclass(frozen=True, slots=True)
class MethodResult:
    method: str
    score: float | None
    scored: Scored | None
    """None for a result restored from a log (only the score is logged)."""


@dataclass(frozen=True, slots=True)
class JobResult:
    spec: JobSpec
    explanation: str
    score: float | None
    """The first scoring method's score."""
    scored: Scored | None
    """None when the explanation was not scored."""
    scoring_method: str | None
    scores: tuple[MethodResult, ...] = ()
    """Every scoring method's result, in the job's order (the first is ``score``/``scored``)."""
    provenance: dict[str, object] = field(default_factory=dict)
    """How an explain job's explanation was written (``Explained.provenance``); empty for score jobs."""
