"""What a scorer reports as each scored sequence (or example) finishes: one type, from scorer to client.

The same value travels from the scorers (``on_sequence``) through the job's event log (where it is the
``SequenceSimulated`` event and gets its ``seq``) to the GraphQL type of the same name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SequenceSimulated:
    """One scored sequence, in completion order.

    - simulation (``baseline``, ``all-at-once``, ``token-lookup``): per-token ``predicted`` (0-10) and
      ``actual`` activations, ``sequence_score`` the correlation on this sequence alone;
    - heads: one labelled token pair (one value each: P(label 1) and the 0/1 label);
    - ``detection`` / ``fuzzing``: one example (one value each: the answer 0/1 and the label 0/1);
    - ``embedding``: one example (its cosine similarity to the explanation, and the label 0/1).

    ``running_score`` is the method's score over every sequence finished so far.
    """

    index: int
    """Position in the method's list of scored sequences (or examples)."""
    tokens: list[str]
    predicted: list[float]
    actual: list[float]
    sequence_score: float | None
    running_score: float | None
    method: str | None = None
    """The scoring method that produced it (set by the job; a job may run several)."""
    seq: int = -1
    """Position in a job's event log; assigned when logged (-1 before)."""


OnSequence = Callable[[SequenceSimulated], Awaitable[None]]
