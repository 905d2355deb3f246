"""Explanation and scoring methods, chosen by name per request (and by ``--neuron_method`` /
``--attention_head_method`` for defaults).

``baseline`` keeps the original's meaning, the standard LLM method: the token-activation-pair
explainer and the logprob-free simulator for neurons and latents; the attention-head explainer
and the one-at-a-time scorer for heads. ``all-at-once`` is the paper's logprob simulator (needs an
endpoint with prompt logprobs). ``top-tokens`` (explain) and ``token-lookup`` (score) need no LLM.
``detection`` and ``fuzzing`` (LLM) and ``embedding`` (a local sentence model, no LLM) classify
examples instead of simulating (``explanations.classifiers``); fuzzing marks tokens, so it scores
per-token nodes only.
Attention *latents* have per-token records, so they use the neuron methods (the original sent them
to the head scorer, reference §7.4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput, LlmNotConfigured
from neuron_explainer.explanations.attention_scoring import (
    AttentionPairScorer,
    LlmPairPredictor,
    candidate_pairs,
)
from neuron_explainer.explanations.classifiers import EmbeddingScorer, LlmClassifierScorer
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.explanations.explainers import AttentionHeadExplainer, FewShotSource, TokenActivationPairExplainer
from neuron_explainer.explanations.llm import LlmClient
from neuron_explainer.explanations.no_llm import (
    TokenLookupPairPredictor,
    TokenLookupSimulator,
    TopPairsExplainer,
    TopTokensExplainer,
)
from neuron_explainer.explanations.outcomes import OnSequence
from neuron_explainer.explanations.protocols import Explainer, ScoreOutcome, Scorer
from neuron_explainer.explanations.scoring import simulate_and_score
from neuron_explainer.explanations.simulators import AllAtOnceSimulator, LogprobFreeSimulator, Simulator
from neuron_explainer.explanations.splits import DEFAULT_EXAMPLES_PER_SPLIT, valid_records
from neuron_explainer.nodes import NodeId, NodeKind


class SimulationScorer:
    """Neurons and latents: simulate the valid records, correlate over their concatenation."""

    def __init__(
        self,
        simulator: Simulator,
        concurrency: int = 8,
        examples_per_split: int | None = DEFAULT_EXAMPLES_PER_SPLIT,
    ) -> None:
        self.simulator = simulator
        self.concurrency = concurrency
        self.examples_per_split = examples_per_split

    def planned_sequences(self, record: NeuronRecord, max_sequences: int | None) -> int:
        return len(valid_records(record, self.examples_per_split, max_sequences))

    async def score(
        self,
        explanation: str,
        record: NeuronRecord,
        *,
        max_sequences: int | None,
        on_sequence: OnSequence | None,
    ) -> ScoreOutcome:
        records = valid_records(record, self.examples_per_split, max_sequences)
        scored = await simulate_and_score(
            self.simulator, explanation, records, concurrency=self.concurrency, on_sequence=on_sequence
        )
        return ScoreOutcome(scored.ev_correlation_score, scored)


class HeadScorer:
    """Heads: ROC-AUC over labelled token pairs of the valid records; one report per pair."""

    def __init__(self, pair_scorer: AttentionPairScorer) -> None:
        self.pair_scorer = pair_scorer

    def planned_sequences(self, record: NeuronRecord, max_sequences: int | None) -> int:
        return len(
            candidate_pairs(valid_records(record, DEFAULT_EXAMPLES_PER_SPLIT, max_sequences), record.max_activation)
        )

    async def score(
        self,
        explanation: str,
        record: NeuronRecord,
        *,
        max_sequences: int | None,
        on_sequence: OnSequence | None,
    ) -> ScoreOutcome:
        records = valid_records(record, DEFAULT_EXAMPLES_PER_SPLIT, max_sequences)
        scored = await self.pair_scorer.score(explanation, records, record.max_activation, on_sequence)
        return ScoreOutcome(scored.roc_auc_score, scored)


def _llm(llm: LlmClient | None, method: str) -> LlmClient:
    if llm is None:
        raise LlmNotConfigured(
            f"method {method!r} needs an LLM endpoint, and none is configured "
            "(set OPENAI_API_KEY, or use a no-LLM method: top-tokens / token-lookup / embedding)",
            method=method,
        )
    return llm


@dataclass(frozen=True, slots=True)
class _Parts:
    """What a method factory may use."""

    llm: LlmClient | None
    embedder: SentenceEmbedder | None
    concurrency: int
    few_shot: FewShotSource | None


def _baseline_explainer(parts: _Parts, node: NodeId | None, head: bool) -> Explainer:
    client = _llm(parts.llm, "baseline")
    if head:
        return AttentionHeadExplainer(client)
    return TokenActivationPairExplainer(client, few_shot=parts.few_shot, node=node)


def _top_tokens_explainer(parts: _Parts, node: NodeId | None, head: bool) -> Explainer:
    return TopPairsExplainer() if head else TopTokensExplainer()


def _baseline_scorer(parts: _Parts, head: bool) -> Scorer:
    client = _llm(parts.llm, "baseline")
    if head:
        return HeadScorer(AttentionPairScorer(LlmPairPredictor(client), parts.concurrency))
    return SimulationScorer(LogprobFreeSimulator(client), parts.concurrency)


def _all_at_once_scorer(parts: _Parts, head: bool) -> Scorer:
    if head:
        raise BadInput(
            "method 'all-at-once' does not score attention heads; use baseline or token-lookup",
            method="all-at-once",
        )
    return SimulationScorer(AllAtOnceSimulator(_llm(parts.llm, "all-at-once")), parts.concurrency)


def _token_lookup_scorer(parts: _Parts, head: bool) -> Scorer:
    if head:
        return HeadScorer(AttentionPairScorer(TokenLookupPairPredictor(), parts.concurrency))
    return SimulationScorer(TokenLookupSimulator(), parts.concurrency)


def _detection_scorer(parts: _Parts, head: bool) -> Scorer:
    return LlmClassifierScorer(_llm(parts.llm, "detection"), "detection", concurrency=parts.concurrency)


def _fuzzing_scorer(parts: _Parts, head: bool) -> Scorer:
    if head:
        raise BadInput(
            "method 'fuzzing' marks tokens, and attention heads' values are per token pair; use detection",
            method="fuzzing",
        )
    return LlmClassifierScorer(_llm(parts.llm, "fuzzing"), "fuzzing", concurrency=parts.concurrency)


def _embedding_scorer(parts: _Parts, head: bool) -> Scorer:
    embedder = parts.embedder or SentenceEmbedder()
    embedder.require()
    return EmbeddingScorer(embedder)


_EXPLAINERS: dict[str, Callable[[_Parts, NodeId | None, bool], Explainer]] = {
    "baseline": _baseline_explainer,
    "top-tokens": _top_tokens_explainer,
}
_SCORERS: dict[str, Callable[[_Parts, bool], Scorer]] = {
    "baseline": _baseline_scorer,
    "all-at-once": _all_at_once_scorer,
    "token-lookup": _token_lookup_scorer,
    "detection": _detection_scorer,
    "fuzzing": _fuzzing_scorer,
    "embedding": _embedding_scorer,
}


_PARTNERS: dict[str, str] = {
    "top-tokens": "token-lookup",
    "token-lookup": "top-tokens",
    "all-at-once": "baseline",
    "detection": "baseline",
    "fuzzing": "baseline",
    "embedding": "top-tokens",
}
"""A server-wide default (``--neuron_method``) names one method for both jobs: a scorer-only name
explains with its partner and vice versa, so ``--neuron_method top-tokens`` explains *and* scores
without an LLM."""


def default_explainer(name: str) -> str:
    """The explanation method a ``--neuron_method`` / ``--attention_head_method`` value stands for."""
    return name if name in _EXPLAINERS else _PARTNERS.get(name, name)


def default_scorer(name: str) -> str:
    """The scoring method a ``--neuron_method`` / ``--attention_head_method`` value stands for."""
    return name if name in _SCORERS else _PARTNERS.get(name, name)


class MethodRegistry:
    """Builds explainers and scorers by name; an LLM method without an LLM is ``LlmNotConfigured``, the
    embedding method without its package ``ModelNotLoaded``."""

    def __init__(
        self,
        llm: LlmClient | None,
        sequence_concurrency: int = 8,
        *,
        embedder: SentenceEmbedder | None = None,
        few_shot: FewShotSource | None = None,
    ) -> None:
        self.llm = llm
        self.sequence_concurrency = sequence_concurrency
        self.embedder = embedder
        self.few_shot = few_shot

    @property
    def _parts(self) -> _Parts:
        return _Parts(self.llm, self.embedder, self.sequence_concurrency, self.few_shot)

    @staticmethod
    def explainer_names() -> Sequence[str]:
        return list(_EXPLAINERS)

    @staticmethod
    def scorer_names() -> Sequence[str]:
        return list(_SCORERS)

    def explainer(self, method: str, kind: NodeKind, node: NodeId | None = None) -> Explainer:
        factory = _EXPLAINERS.get(method)
        if factory is None:
            raise BadInput(
                f"unknown explanation method {method!r}; known: {', '.join(_EXPLAINERS)}",
                method=method,
                known=list(_EXPLAINERS),
            )
        return factory(self._parts, node, kind.is_token_pair)

    def scorer(self, method: str, kind: NodeKind) -> Scorer:
        factory = _SCORERS.get(method)
        if factory is None:
            raise BadInput(
                f"unknown scoring method {method!r}; known: {', '.join(_SCORERS)}",
                method=method,
                known=list(_SCORERS),
            )
        return factory(self._parts, kind.is_token_pair)
