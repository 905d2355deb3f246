"""Which records an explainer sees and which a scorer checks against (reference §2.2).

The original splits top records with stride 4 (train = 0,4,8,..; valid = 2,6,10,..) and random
records with stride 3 (valid = 1,4,7,..), taking 5 of each, and asserts >= 20 top and >= 15 random
records. We take what exists: a node with 7 top records explains from top[0,4] and scores on
top[2,6] + random[1,4,...]. Only a node with no top records, or one never active, is refused.
"""

from __future__ import annotations

import math

from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.errors import BadInput

DEFAULT_EXAMPLES_PER_SPLIT = 5


def _strided(records: list[ActivationRecord], start: int, stride: int, n: int | None) -> list[ActivationRecord]:
    picked = records[start::stride]
    return picked if n is None else picked[:n]


def check_explainable(record: NeuronRecord, node: str) -> None:
    """BadInput for the original's 422 cases: no records, or a node that is never active."""
    if not record.most_positive_activation_records:
        raise BadInput(f"node {node} has no activation records", node=node)
    if not record.max_activation > 0:
        raise BadInput(
            f"node {node} is never active (max activation {record.max_activation})",
            node=node,
            max_activation=record.max_activation,
        )


def train_records(record: NeuronRecord, n: int | None = DEFAULT_EXAMPLES_PER_SPLIT) -> list[ActivationRecord]:
    """Top records 0, 4, 8, ... (``n`` of them; ``None`` = all)."""
    return _strided(record.most_positive_activation_records, 0, 4, n)


def valid_records(
    record: NeuronRecord, n: int | None = DEFAULT_EXAMPLES_PER_SPLIT, max_sequences: int | None = None
) -> list[ActivationRecord]:
    """Top records 2, 6, 10, ... then random records 1, 4, 7, ...; cut to ``max_sequences``.

    As in the original, the top records come first, so a small ``max_sequences`` scores on top
    records only (biased upwards); the default scores on all of them.
    """
    records = _strided(record.most_positive_activation_records, 2, 4, n) + _strided(record.random_sample, 1, 3, n)
    if max_sequences is not None:
        if max_sequences < 1:
            raise BadInput(f"maxSequences must be at least 1, got {max_sequences}", argument="maxSequences")
        records = records[:max_sequences]
    if not records:
        raise BadInput(
            f"node {record.layer}/{record.index} has too few records to score: the valid split "
            f"(top records 2, 6, 10, ...; random records 1, 4, 7, ...) is empty",
            top_records=len(record.most_positive_activation_records),
            random_records=len(record.random_sample),
        )
    return records


def normalize_0_10(values: list[float], max_activation: float) -> list[int]:
    """``floor(10 * relu(x) / max)`` capped at 10: the integer scale the prompts show the LLM."""
    if not max_activation > 0:
        return [0 for _ in values]
    return [min(10, math.floor(10 * max(0.0, v) / max_activation)) for v in values]
