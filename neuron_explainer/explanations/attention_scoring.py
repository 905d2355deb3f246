"""Scoring an attention-head explanation one token pair at a time (reference §5.5).

Candidates come from the valid records: the 5 strongest pairs overall (label 1) and up to 5 pairs
drawn at random (fixed seed) among those below 0.1 x the head's max activation (label 0). Each pair
is one chat call answering "1"/"0"; the prediction is p("1") / (p("0") + p("1")) from the top
logprobs, or the answered digit when neither appears there. The score is ROC-AUC, ``None`` when the
candidates hold one class only (the original's sklearn call raised there).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from neuron_explainer.activations.records import ActivationRecord
from neuron_explainer.errors import LlmBadReply
from neuron_explainer.explanations.attention_pairs import TokenPair, all_pairs
from neuron_explainer.explanations.attention_prompts import build_attention_score_prompt
from neuron_explainer.explanations.llm import LlmClient
from neuron_explainer.explanations.metrics import roc_auc
from neuron_explainer.explanations.outcomes import OnSequence, SequenceSimulated
from neuron_explainer.explanations.results import AttentionSimulation, ScoredAttentionSimulation


@dataclass(frozen=True, slots=True)
class LabelledPair:
    pair: TokenPair
    label: int


def candidate_pairs(
    records: Sequence[ActivationRecord], max_activation: float, n_top: int = 5, n_low: int = 5, seed: int = 0
) -> list[LabelledPair]:
    pairs = all_pairs(records)
    top = sorted(pairs, key=lambda p: p.value, reverse=True)[:n_top]
    low = [p for p in pairs if p.value < 0.1 * max_activation]
    picked = random.Random(seed).sample(low, min(n_low, len(low)))
    return [LabelledPair(p, 1) for p in top] + [LabelledPair(p, 0) for p in picked]


def pair_probability(top_logprobs: dict[str, float], answer: str) -> float:
    p0 = sum(math.exp(lp) for t, lp in top_logprobs.items() if t.strip() == "0")
    p1 = sum(math.exp(lp) for t, lp in top_logprobs.items() if t.strip() == "1")
    if p0 + p1 > 0:
        return p1 / (p0 + p1)
    if answer.strip() in ("0", "1"):
        return float(answer.strip())
    raise ValueError(f"neither '0' nor '1' answered or among the top logprobs (answer {answer!r})")


class PairPredictor(Protocol):
    async def predict(self, explanation: str, tokens: Sequence[str], query: int, key: int) -> float:
        """Probability in [0, 1] that the head attends strongly from ``query`` to ``key``."""
        ...


class LlmPairPredictor:
    """The original's one-at-a-time LLM call (chat, ``max_tokens=1``, top 15 logprobs)."""

    def __init__(self, llm: LlmClient, model: str | None = None, max_reasks: int = 1) -> None:
        self.llm = llm
        self.model = model or llm.settings.simulator_model
        self.max_reasks = max_reasks

    async def predict(self, explanation: str, tokens: Sequence[str], query: int, key: int) -> float:
        messages = build_attention_score_prompt(explanation, tokens, query, key)
        problem = ""
        for _ in range(self.max_reasks + 1):
            reply = await self.llm.chat(messages, model=self.model, max_tokens=1, top_logprobs=15)
            choice = reply.choices[0] if reply.choices else None
            content = choice.logprobs.content if choice and choice.logprobs else None
            top = {t.token: t.logprob for t in content[0].top_logprobs} if content else {}
            try:
                return pair_probability(top, (choice.message.content or "") if choice else "")
            except ValueError as e:
                problem = str(e)
        raise LlmBadReply(f"attention scorer reply unusable: {problem}", model=self.model, problem=problem)


class AttentionPairScorer:
    """Labels candidate pairs, asks ``predictor`` about each (concurrently, bounded) and scores ROC-AUC."""

    def __init__(self, predictor: PairPredictor, concurrency: int = 8) -> None:
        self.predictor = predictor
        self.concurrency = concurrency

    async def score(
        self,
        explanation: str,
        records: Sequence[ActivationRecord],
        max_activation: float,
        on_pair: OnSequence | None = None,
    ) -> ScoredAttentionSimulation:
        candidates = candidate_pairs(records, max_activation)
        semaphore = asyncio.Semaphore(self.concurrency)
        done: dict[int, AttentionSimulation] = {}

        async def one(index: int, candidate: LabelledPair) -> None:
            tokens = records[candidate.pair.record].tokens
            async with semaphore:
                p = await self.predictor.predict(explanation, tokens, candidate.pair.query, candidate.pair.key)
            done[index] = AttentionSimulation(
                tokens=list(tokens),
                token_pair_coords=(candidate.pair.query, candidate.pair.key),
                token_pair_label=candidate.label,
                simulation_prediction=p,
            )
            if on_pair is not None:
                finished = [done[i] for i in sorted(done)]
                running = roc_auc([s.token_pair_label for s in finished], [s.simulation_prediction for s in finished])
                await on_pair(SequenceSimulated(index, list(tokens), [p], [float(candidate.label)], None, running))

        try:
            async with asyncio.TaskGroup() as group:
                for index, candidate in enumerate(candidates):
                    group.create_task(one(index, candidate))
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        simulations = [done[i] for i in range(len(candidates))]
        return ScoredAttentionSimulation(
            attention_simulations=simulations,
            roc_auc_score=roc_auc(
                [s.token_pair_label for s in simulations], [s.simulation_prediction for s in simulations]
            ),
        )
