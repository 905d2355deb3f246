"""Scores of a simulation against the real activations (reference §5.4).

The headline score (``ev_correlation_score``) is the Pearson correlation over all scored
sequences *concatenated*, not the mean of per-sequence correlations. A correlation that is
undefined (a constant prediction or constant truth, e.g. a simulator that predicts 0 everywhere)
is 0.0, as in the original: "explains nothing" — and it keeps stored files free of NaN. Inputs are
strict (``metrics.paired``): sides of different lengths, or a NaN/inf on either side, are ``BadInput``
(the original raised too), so a broken simulation never looks like a score.
r² and absolute deviation explained compare raw values with 0-10 predictions, so they only mean
something for calibrated simulators (as in the original); they are ``None`` where the original
would divide by zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from neuron_explainer.activations.records import ActivationRecord
from neuron_explainer.explanations.metrics import paired
from neuron_explainer.explanations.outcomes import OnSequence, SequenceSimulated
from neuron_explainer.explanations.results import (
    ScoredSequenceSimulation,
    ScoredSimulation,
    SequenceSimulation,
)
from neuron_explainer.explanations.simulators import Simulator


def correlation_score(real: Sequence[float], predicted: Sequence[float]) -> float:
    """Pearson r (``np.corrcoef``); 0.0 when undefined (fewer than 2 values or either side constant).

    ``BadInput`` when the lengths differ or a value is not finite."""
    a, b = paired(real, predicted, "a correlation score")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    r = float(np.corrcoef(a, b)[0, 1])
    return r if np.isfinite(r) else 0.0


def rsquared_score(real: Sequence[float], predicted: Sequence[float]) -> float | None:
    """1 - mean((real - pred)^2) / mean(real^2); None when every real value is 0."""
    a, b = paired(real, predicted, "an r-squared score")
    denominator = float(np.mean(a**2)) if a.size else 0.0
    return None if denominator == 0 else 1.0 - float(np.mean((a - b) ** 2)) / denominator


def absolute_dev_explained_score(real: Sequence[float], predicted: Sequence[float]) -> float | None:
    """1 - mean|real - pred| / mean|real|; None when every real value is 0."""
    a, b = paired(real, predicted, "an absolute-deviation score")
    denominator = float(np.mean(np.abs(a))) if a.size else 0.0
    return None if denominator == 0 else 1.0 - float(np.mean(np.abs(a - b))) / denominator


def score_sequence(simulation: SequenceSimulation, real: Sequence[float]) -> ScoredSequenceSimulation:
    predicted = simulation.expected_activations
    return ScoredSequenceSimulation(
        sequence_simulation=simulation,
        true_activations=list(real),
        ev_correlation_score=correlation_score(real, predicted),
        rsquared_score=rsquared_score(real, predicted),
        absolute_dev_explained_score=absolute_dev_explained_score(real, predicted),
    )


def aggregate(scored: Sequence[ScoredSequenceSimulation]) -> ScoredSimulation:
    real = [v for s in scored for v in s.true_activations]
    predicted = [v for s in scored for v in s.sequence_simulation.expected_activations]
    return ScoredSimulation(
        scored_sequence_simulations=list(scored),
        ev_correlation_score=correlation_score(real, predicted),
        rsquared_score=rsquared_score(real, predicted),
        absolute_dev_explained_score=absolute_dev_explained_score(real, predicted),
    )


async def simulate_and_score(
    simulator: Simulator,
    explanation: str,
    records: Sequence[ActivationRecord],
    *,
    concurrency: int = 8,
    on_sequence: OnSequence | None = None,
) -> ScoredSimulation:
    """Simulate every record (``concurrency`` at a time), report each as it finishes, score them all.

    The first failing sequence fails the whole scoring (the others are cancelled): a score over the
    sequences that happened to succeed would not be the score of this explanation.
    """
    semaphore = asyncio.Semaphore(concurrency)
    done: dict[int, ScoredSequenceSimulation] = {}

    async def one(index: int, record: ActivationRecord) -> None:
        async with semaphore:
            simulation = await simulator.simulate(explanation, record.tokens)
        scored = score_sequence(simulation, record.activations)
        done[index] = scored
        if on_sequence is not None:
            running = aggregate([done[i] for i in sorted(done)]).ev_correlation_score
            await on_sequence(
                SequenceSimulated(
                    index,
                    list(record.tokens),
                    simulation.expected_activations,
                    list(record.activations),
                    scored.ev_correlation_score,
                    running,
                )
            )

    try:
        async with asyncio.TaskGroup() as group:
            for index, record in enumerate(records):
                group.create_task(one(index, record))
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return aggregate([done[i] for i in range(len(records))])
