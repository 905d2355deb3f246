"""Scorers that classify examples instead of simulating activations (Paulo et al. 2024, arXiv 2410.13928).

- **detection**: the LLM gets the explanation and a shuffled mix of activating and non-activating
  excerpts (``explanations.examples``), several per call, and says for each whether the node fires in
  it. Score: balanced accuracy (the mean of the true-positive and true-negative rates, so a scorer that
  always says yes gets 0.5); precision, recall and F1 are stored too.
- **fuzzing**: the LLM sees excerpts with some tokens marked and says whether the marked tokens are
  ones the explanation describes. Positives are activating records with their active tokens marked (at
  least ``HIGHLIGHT_FRACTION`` of the record's max); negatives mark the same number of tokens that are not
  active, in activating records (every other one) and in non-activating ones. Score: balanced accuracy.
  It tests *where* an explanation says the node fires, which detection cannot.
- **embedding**: no LLM. Each excerpt's text and the explanation are embedded with a local sentence
  model; the score is the ROC-AUC of cosine similarity separating activating from non-activating
  excerpts (1.0: every activating excerpt is closer to the explanation than every other one).

Examples are shuffled with a seed fixed per node, so reruns ask the same questions. A reply that does not
parse is asked again, then the job fails ``LLM_BAD_REPLY``: an unparsed batch is never scored as wrong.
"""

from __future__ import annotations

import asyncio
import math
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import LlmBadReply
from neuron_explainer.explanations.classification import ClassifiedExample, ScoredClassification
from neuron_explainer.explanations.classifier_prompts import (
    DETECTION_SYSTEM,
    FUZZING_SYSTEM,
    build_classifier_prompt,
    excerpt,
    parse_answers,
    reask,
)
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.explanations.examples import DEFAULT_ACTIVATING, DEFAULT_NON_ACTIVATING, Example, select_examples
from neuron_explainer.explanations.llm import LlmClient
from neuron_explainer.explanations.metrics import binary_metrics, roc_auc
from neuron_explainer.explanations.outcomes import OnSequence, SequenceSimulated
from neuron_explainer.explanations.protocols import ScoreOutcome

HIGHLIGHT_FRACTION = 0.3
"""Fuzzing marks a token as active when it reaches this fraction of its record's max (delphi's default)."""


def _seed(record: NeuronRecord, method: str) -> int:
    return zlib.crc32(f"{method}/{record.layer}/{record.index}".encode())


@dataclass(frozen=True, slots=True)
class _Item:
    """One question: the example, what is marked (fuzzing) and the label the answer is checked against."""

    example: Example
    label: int
    highlighted: tuple[int, ...] = ()


def _classification(method: str, items: Sequence[_Item], answers: Sequence[int]) -> ScoredClassification:
    labels = [it.label for it in items]
    m = binary_metrics(labels, answers)
    examples = [
        ClassifiedExample(
            tokens=list(it.example.record.tokens),
            activations=list(it.example.record.activations),
            source=it.example.source,
            label=it.label,
            prediction=a,
            highlighted=list(it.highlighted) if method == "fuzzing" else None,
        )
        for it, a in zip(items, answers, strict=True)
    ]
    return ScoredClassification(
        method, examples, m.balanced_accuracy, m.balanced_accuracy, m.precision, m.recall, m.f1, None
    )


class LlmClassifierScorer:
    """Detection and fuzzing: ``examples_per_call`` excerpts per chat call, calls concurrent (bounded)."""

    def __init__(
        self,
        llm: LlmClient,
        method: str,
        *,
        examples_per_call: int = 5,
        concurrency: int = 8,
        max_reasks: int = 2,
        model: str | None = None,
        n_activating: int = DEFAULT_ACTIVATING,
        n_non_activating: int = DEFAULT_NON_ACTIVATING,
    ) -> None:
        if method not in ("detection", "fuzzing"):
            raise ValueError(f"not an LLM classifier method: {method!r}")
        self.llm = llm
        self.method = method
        self.examples_per_call = examples_per_call
        self.concurrency = concurrency
        self.max_reasks = max_reasks
        self.model = model or llm.settings.simulator_model
        self.system = DETECTION_SYSTEM if method == "detection" else FUZZING_SYSTEM
        self.n_activating = n_activating
        self.n_non_activating = n_non_activating

    def items(self, record: NeuronRecord, max_sequences: int | None) -> list[_Item]:
        examples = select_examples(
            record,
            self.method,
            n_activating=self.n_activating,
            n_non_activating=self.n_non_activating,
            max_examples=max_sequences,
        )
        items = [_Item(e, int(e.activating)) for e in examples] if self.method == "detection" else _fuzz(examples)
        random.Random(_seed(record, self.method)).shuffle(items)
        return items

    def planned_sequences(self, record: NeuronRecord, max_sequences: int | None) -> int:
        return len(self.items(record, max_sequences))

    async def score(
        self,
        explanation: str,
        record: NeuronRecord,
        *,
        max_sequences: int | None,
        on_sequence: OnSequence | None,
    ) -> ScoreOutcome:
        items = self.items(record, max_sequences)
        per_call = self.examples_per_call
        batches = [list(range(i, min(i + per_call, len(items)))) for i in range(0, len(items), per_call)]
        answers: dict[int, int] = {}
        semaphore = asyncio.Semaphore(self.concurrency)
        reporting = asyncio.Lock()

        async def one(batch: list[int]) -> None:
            excerpts = [excerpt(items[i].example.record.tokens, items[i].highlighted) for i in batch]
            async with semaphore:
                got = await self._ask(explanation, excerpts)
            async with reporting:
                for i, a in zip(batch, got, strict=True):
                    answers[i] = a
                if on_sequence is None:
                    return
                done = sorted(answers)
                running = binary_metrics([items[i].label for i in done], [answers[i] for i in done])
                for i in batch:
                    it = items[i]
                    await on_sequence(
                        SequenceSimulated(
                            i,
                            list(it.example.record.tokens),
                            [float(answers[i])],
                            [float(it.label)],
                            None,
                            running.balanced_accuracy,
                        )
                    )

        try:
            async with asyncio.TaskGroup() as group:
                for batch in batches:
                    group.create_task(one(batch))
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        scored = _classification(self.method, items, [answers[i] for i in range(len(items))])
        return ScoreOutcome(scored.score, scored)

    async def _ask(self, explanation: str, excerpts: list[str]) -> list[int]:
        messages = build_classifier_prompt(self.system, explanation, excerpts)
        problem = ""
        for _ in range(self.max_reasks + 1):
            reply = await self.llm.chat(messages, model=self.model, max_tokens=20 + 4 * len(excerpts), json_mode=True)
            text = (reply.choices[0].message.content or "") if reply.choices else ""
            try:
                return parse_answers(text, len(excerpts))
            except ValueError as e:
                problem = str(e)
                messages = [*messages, {"role": "assistant", "content": text[:2000]}, reask(problem, len(excerpts))]
        raise LlmBadReply(
            f"{self.method} reply unusable after {self.max_reasks + 1} tries: {problem}",
            model=self.model,
            problem=problem,
        )


def _active_positions(example: Example) -> list[int]:
    top = example.max_activation
    return [n for n, a in enumerate(example.record.activations) if top > 0 and a >= HIGHLIGHT_FRACTION * top]


def _fuzz(examples: Sequence[Example]) -> list[_Item]:
    """Positives: active tokens marked. Negatives: as many inactive tokens marked (module docstring)."""
    activating = [e for e in examples if e.activating]
    n_marked = max(1, math.ceil(np.mean([len(_active_positions(e)) for e in activating]))) if activating else 1
    items: list[_Item] = []
    for k, e in enumerate(activating):
        active = _active_positions(e)
        inactive = [n for n in range(len(e.record.tokens)) if n not in set(active)]
        if k % 2 == 0 or len(inactive) < 1:
            items.append(_Item(e, 1, tuple(active)))
        else:
            picked = random.Random(k).sample(inactive, min(n_marked, len(inactive)))
            items.append(_Item(e, 0, tuple(sorted(picked))))
    for k, e in enumerate(x for x in examples if not x.activating):
        n = len(e.record.tokens)
        if n:
            items.append(_Item(e, 0, tuple(sorted(random.Random(1000 + k).sample(range(n), min(n_marked, n))))))
    return items


class EmbeddingScorer:
    """ROC-AUC of explanation-to-excerpt cosine similarity (no LLM); the model runs off the event loop."""

    method = "embedding"

    def __init__(self, embedder: SentenceEmbedder) -> None:
        self.embedder = embedder

    def examples(self, record: NeuronRecord, max_sequences: int | None) -> list[Example]:
        return select_examples(record, self.method, max_examples=max_sequences)

    def planned_sequences(self, record: NeuronRecord, max_sequences: int | None) -> int:
        self.embedder.require()
        return len(self.examples(record, max_sequences))

    async def score(
        self,
        explanation: str,
        record: NeuronRecord,
        *,
        max_sequences: int | None,
        on_sequence: OnSequence | None,
    ) -> ScoreOutcome:
        examples = self.examples(record, max_sequences)
        texts = ["".join(e.record.tokens) for e in examples]
        vectors = await self.embedder.embed([explanation, *texts])  # [1 + n, DIM], unit rows
        similarity = [float(v) for v in vectors[1:] @ vectors[0]]  # [n]
        labels = [int(e.activating) for e in examples]
        auc = roc_auc(labels, similarity)
        if on_sequence is not None:
            for i, e in enumerate(examples):
                running = roc_auc(labels[: i + 1], similarity[: i + 1])
                await on_sequence(
                    SequenceSimulated(i, list(e.record.tokens), [similarity[i]], [float(labels[i])], None, running)
                )
        scored = ScoredClassification(
            self.method,
            [
                ClassifiedExample(list(e.record.tokens), list(e.record.activations), e.source, lab, None, sim)
                for e, lab, sim in zip(examples, labels, similarity, strict=True)
            ],
            auc,
            roc_auc=auc,
        )
        return ScoreOutcome(auc, scored)
