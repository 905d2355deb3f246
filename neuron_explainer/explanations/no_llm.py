"""Methods that need no LLM, so a server with no network and no key can still explain and score.

``top-tokens`` explains a node by quoting the tokens it is most active on (JSON-quoted, so they can
be read back exactly); ``token-lookup`` simulates an explanation by predicting 10 on tokens the
explanation quotes (or, for free text, whose word it contains) and 0 elsewhere. They are baselines:
a top-tokens explanation scored by token-lookup measures how much of a node is "which token".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.attention_pairs import top_pairs
from neuron_explainer.explanations.protocols import Explained
from neuron_explainer.explanations.results import ActivationScale, SequenceSimulation
from neuron_explainer.explanations.splits import train_records

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = {
    "a",
    "an",
    "the",
    "of",
    "to",
    "in",
    "and",
    "or",
    "for",
    "on",
    "at",
    "with",
    "from",
    "tokens",
    "token",
    "words",
    "word",
    "like",
    "such",
    "as",
    "this",
    "that",
    "is",
    "are",
    "attends",
}


def _quote(tokens: Sequence[str]) -> str:
    return ", ".join(json.dumps(t, ensure_ascii=False) for t in tokens)


def quoted_tokens(text: str) -> list[str]:
    out = []
    for match in _QUOTED.findall(text):
        try:
            out.append(json.loads(match))
        except json.JSONDecodeError:
            out.append(match[1:-1])
    return out


class TopTokensExplainer:
    """Neurons/latents: the distinct tokens with the highest activations in the train records, among
    those reaching ``min_fraction`` of the max (5 on the prompts' 0-10 scale)."""

    def __init__(self, n_tokens: int = 5, min_fraction: float = 0.5) -> None:
        self.n_tokens = n_tokens
        self.min_fraction = min_fraction

    async def explain(self, record: NeuronRecord) -> Explained:
        records = train_records(record)
        floor = self.min_fraction * max((a for r in records for a in r.activations), default=0.0)
        best: dict[str, float] = {}
        for r in records:
            for token, value in zip(r.tokens, r.activations, strict=True):
                if value > 0 and value >= floor and value > best.get(token, 0.0):
                    best[token] = value
        ranked = sorted(best, key=lambda t: best[t], reverse=True)[: self.n_tokens]
        return Explained(f"the tokens {_quote(ranked)}")


class TopPairsExplainer:
    """Heads: the to/from tokens of the strongest token pairs in the train records."""

    def __init__(self, n_pairs: int = 5) -> None:
        self.n_pairs = n_pairs

    async def explain(self, record: NeuronRecord) -> Explained:
        records = train_records(record)
        pairs = [p for p in top_pairs(records, self.n_pairs) if p.value > 0]
        to = list(dict.fromkeys(records[p.record].tokens[p.key] for p in pairs))
        frm = list(dict.fromkeys(records[p.record].tokens[p.query] for p in pairs))
        return Explained(f"attends to {_quote(to)} from {_quote(frm)}")


class _Lookup:
    def __init__(self, text: str) -> None:
        self.exact = set(quoted_tokens(text))
        self.words = set() if self.exact else set(_WORD.findall(text.lower())) - _STOPWORDS

    def __call__(self, token: str) -> bool:
        if self.exact:
            return token in self.exact or token.strip() in {t.strip() for t in self.exact}
        words = _WORD.findall(token.lower())
        return bool(words) and all(w in self.words for w in words)


class TokenLookupSimulator:
    """Predicts 10 on tokens the explanation names, 0 elsewhere."""

    async def simulate(self, explanation: str, tokens: Sequence[str]) -> SequenceSimulation:
        mentioned = _Lookup(explanation)
        return SequenceSimulation(
            tokens=list(tokens),
            expected_activations=[10.0 if mentioned(t) else 0.0 for t in tokens],
            activation_scale=ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS,
            distribution_values=[],
            distribution_probabilities=[],
        )


class TokenLookupPairPredictor:
    """Heads: 1 when both tokens are named on their side of "attends to .. from ..", 0.5 for one, else 0."""

    async def predict(self, explanation: str, tokens: Sequence[str], query: int, key: int) -> float:
        to_part, _, from_part = explanation.partition(" from ")
        hits = _Lookup(to_part)(tokens[key]) + _Lookup(from_part)(tokens[query]) if from_part else 0
        return hits / 2
