"""PLACEHOLDER for Stream A's §2.3 result dataclasses (branch ``formats``): take theirs on merge.

Only the names and fields of the contract (reference §2.3) are used by Stream D, always by keyword.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class ActivationScale(enum.Enum):
    NEURON_ACTIVATIONS = "neuron_activations"
    """Values on the node's own scale."""
    SIMULATED_NORMALIZED_ACTIVATIONS = "simulated_normalized_activations"
    """Values on the simulator's 0-10 scale."""
    HUMAN_PREDICTED_ACTIVATIONS = "human_predicted_activations"
    """Values a person predicted."""


@dataclass
class SequenceSimulation:
    tokens: list[str]
    expected_activations: list[float]
    activation_scale: ActivationScale
    distribution_values: list[list[float]] = field(default_factory=list)
    distribution_probabilities: list[list[float]] = field(default_factory=list)
    uncalibrated_simulation: SequenceSimulation | None = None


@dataclass
class ScoredSequenceSimulation:
    sequence_simulation: SequenceSimulation
    true_activations: list[float]
    ev_correlation_score: float
    rsquared_score: float | None = None
    absolute_dev_explained_score: float | None = None


@dataclass
class ScoredSimulation:
    scored_sequence_simulations: list[ScoredSequenceSimulation]
    ev_correlation_score: float | None = None
    rsquared_score: float | None = None
    absolute_dev_explained_score: float | None = None


@dataclass
class ScoredExplanation:
    explanation: str
    scored_simulation: ScoredSimulation


@dataclass
class AttentionSimulation:
    tokens: list[str]
    token_pair_coords: tuple[int, int]
    token_pair_label: int
    simulation_prediction: float


@dataclass
class ScoredAttentionSimulation:
    attention_simulations: list[AttentionSimulation]
    roc_auc_score: float | None = None


@dataclass
class ScoredAttentionExplanation:
    explanation: str
    scored_attention_simulation: ScoredAttentionSimulation
