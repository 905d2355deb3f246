"""Explaining nodes and scoring explanations: LLM client, explainers, simulators, scoring, methods."""

from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import Explainer, MethodRegistry, ScoreOutcome, Scorer
from neuron_explainer.explanations.outcomes import SequenceSimulated
from neuron_explainer.explanations.scoring import correlation_score, simulate_and_score

__all__ = [
    "Explainer",
    "LlmClient",
    "LlmSettings",
    "MethodRegistry",
    "ScoreOutcome",
    "Scorer",
    "SequenceSimulated",
    "correlation_score",
    "simulate_and_score",
]
