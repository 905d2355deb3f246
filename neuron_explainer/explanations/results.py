"""Scored explanations as TDB stores them (reference §2.3): one ``*SimulationResults`` per node.

The classes and field names are TDB's current ones; ``explanations.codec`` reads every legacy variant
into them. Two deliberate differences from TDB's dataclasses:

- ``NeuronSimulationResults`` / ``AttentionSimulationResults`` hold ``layer`` and ``index`` (the head for
  attention) instead of a ``NeuronId``, like ``NeuronRecord``; the codec writes the ``NeuronId`` object.
- ``ScoredExplanation`` / ``ScoredAttentionExplanation`` carry an optional ``method`` (which explainer
  wrote the text: ``"baseline"``, ``"top-tokens"``, ...). It is written only when set, so files without
  it are exactly TDB's format; a file with it is read by any tolerant reader (ours ignores unknown
  fields) but **not** by TDB's own loader, which passes every key to the dataclass constructor.

Also surprising: ``explanation`` may be None (legacy "baseline" entries of ``ScoredExplanationOrBaseline``
lists; TDB's read route skips them), ``scored_simulation`` may be None (never scored), and scores may be
None (undefined, e.g. a never-active neuron) or NaN (written by older code).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

from neuron_explainer.explanations.classification import ClassifiedExplanation


class ActivationScale(enum.StrEnum):
    """Which units a ``SequenceSimulation``'s expected activations and distribution values are in."""

    NEURON_ACTIVATIONS = "neuron_activations"
    """Real activations of the node (after calibration)."""
    SIMULATED_NORMALIZED_ACTIVATIONS = "simulated_normalized_activations"
    """The simulator's arbitrary 0-10 scale, not an activation."""
    HUMAN_PREDICTED_ACTIVATIONS = "human_predicted_activations"
    """Human predictions on a 0-2 scale (unused by TDB)."""


@dataclass(frozen=True, slots=True)
class SequenceSimulation:
    """A simulator's prediction on one token sequence (per-token lists, ``[n_tokens]``)."""

    tokens: list[str]
    expected_activations: list[float]
    activation_scale: ActivationScale
    distribution_values: list[list[float]]
    """Per token, the values of the simulator's discrete distribution (its top-K tokens only)."""
    distribution_probabilities: list[list[float]]
    """Per token, the probabilities of ``distribution_values``."""
    uncalibrated_simulation: SequenceSimulation | None = None


@dataclass(frozen=True, slots=True)
class ScoredSequenceSimulation:
    sequence_simulation: SequenceSimulation
    true_activations: list[float]
    """Ground truth on the sequence, not normalized."""
    ev_correlation_score: float
    """Correlation of simulated expected values with the true activations on this sequence (may be NaN)."""
    rsquared_score: float | None = None
    absolute_dev_explained_score: float | None = None


@dataclass(frozen=True, slots=True)
class ScoredSimulation:
    scored_sequence_simulations: list[ScoredSequenceSimulation]
    ev_correlation_score: float | None = None
    """Correlation over all sequences pooled (not the mean of per-sequence scores); the preferred score."""
    rsquared_score: float | None = None
    absolute_dev_explained_score: float | None = None


@dataclass(frozen=True, slots=True)
class ScoredExplanation:
    explanation: str | None
    scored_simulation: ScoredSimulation | None
    method: str | None = None
    """Our extension: the explanation method's name; written only when set (see module docstring)."""


@dataclass(frozen=True, slots=True)
class NeuronSimulationResults:
    """Every scored explanation of one per-token node (MLP neuron or autoencoder latent)."""

    layer: int
    index: int
    scored_explanations: list[ScoredExplanation] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AttentionSimulation:
    """One token pair an attention explanation was tested on."""

    tokens: list[str]
    token_pair_coords: tuple[int, int]
    """(query token i, key token j) of the pair."""
    token_pair_label: int
    """1 when the pair is among the head's top-activating pairs, 0 for a low one."""
    simulation_prediction: float
    """The simulator's P(label 1)."""


@dataclass(frozen=True, slots=True)
class ScoredAttentionSimulation:
    attention_simulations: list[AttentionSimulation]
    roc_auc_score: float | None = None
    """ROC AUC of the predictions against the labels: the preferred score."""


@dataclass(frozen=True, slots=True)
class ScoredAttentionExplanation:
    explanation: str | None
    scored_attention_simulation: ScoredAttentionSimulation | None
    method: str | None = None
    """Our extension: the explanation method's name; written only when set (see module docstring)."""


@dataclass(frozen=True, slots=True)
class AttentionSimulationResults:
    """Every scored explanation of one attention head (``index`` is the head)."""

    layer: int
    index: int
    scored_explanations: list[ScoredAttentionExplanation] = field(default_factory=list)


def preferred_score(
    scored_explanation: ScoredExplanation | ScoredAttentionExplanation | ClassifiedExplanation,
) -> float | None:
    """``ev_correlation_score`` for neurons and latents, ``roc_auc_score`` for heads, as TDB reports them
    (classifier scorers: their headline ``score``).

    None when undefined: unscored, stored as null, or NaN (a NaN cannot be shown or sent as a GraphQL Float).
    """
    score: float | None
    if isinstance(scored_explanation, ClassifiedExplanation):
        score = scored_explanation.scored_classification.score
    elif isinstance(scored_explanation, ScoredExplanation):
        simulation = scored_explanation.scored_simulation
        score = None if simulation is None else simulation.ev_correlation_score
    else:
        attention = scored_explanation.scored_attention_simulation
        score = None if attention is None else attention.roc_auc_score
    if score is None or math.isnan(score):
        return None
    return score
