"""What a job reports, in order: the typed event log a subscription replays and follows.

Every event carries ``seq``, its position in its job's log (0, 1, 2, ...), assigned by the log on
append; a subscriber that saw ``seq = n`` resumes with ``after = n`` and misses nothing.
A log always ends with exactly one ``Completed`` or ``Failed``, except that a job stopped by a server
shutdown logs ``Failed(code=INTERRUPTED)`` and, when it is resumed, goes on in the same log: ``Started``
again, and so on to its real end. Only a ``Failed`` that is not an interruption, or an interruption that
is the log's last event, ends a follower.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuron_explainer.explanations.outcomes import SequenceSimulated


@dataclass(frozen=True, slots=True)
class Started:
    seq: int = -1


@dataclass(frozen=True, slots=True)
class ExplanationProduced:
    text: str
    provenance: dict[str, object] | None = None
    """How it was written (few-shot set, prompt tokens); a resumed job stores it with the explanation."""
    seq: int = -1


@dataclass(frozen=True, slots=True)
class Progress:
    done: int
    total: int
    seq: int = -1


@dataclass(frozen=True, slots=True)
class Completed:
    explanation: str
    score: float | None
    """The first scoring method's score; None for an explanation that was not scored, or a head score
    with one class of pairs."""
    scores: dict[str, float | None] | None = None
    """Every scoring method's score, in the job's order (one entry per method; None when not scored)."""
    seq: int = -1


@dataclass(frozen=True, slots=True)
class Failed:
    code: str
    """The typed error's code (``UPSTREAM_UNAVAILABLE``, ``LLM_BAD_REPLY``, ...)."""
    message: str
    seq: int = -1


INTERRUPTED = "INTERRUPTED"
"""``Failed.code`` of a job the server stopped before it ended; asking again resumes it."""


JobEvent = Started | ExplanationProduced | SequenceSimulated | Progress | Completed | Failed


def is_terminal(event: JobEvent) -> bool:
    return isinstance(event, Completed | Failed)


def is_interruption(event: JobEvent) -> bool:
    return isinstance(event, Failed) and event.code == INTERRUPTED
