"""LLM explainers: write one sentence about what a node does from its train records (reference §5.2).

The reply is returned stripped of surrounding whitespace and a final period (the original kept the
raw completion, e.g. ``" words about cats."``). An empty reply is ``LlmBadReply``.

Few-shot examples for neurons and latents come from a ``FewShotSource`` when one is given and it has
enough (real records of other nodes of the same dataset whose stored explanations scored well), else
from the built-in set; which set was used, the prompt's token count and how it was counted are returned
as the explanation's provenance (stored beside it, see ``jobs.persist``).
"""

from __future__ import annotations

from typing import Protocol

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import LlmBadReply
from neuron_explainer.explanations.attention_pairs import top_pairs
from neuron_explainer.explanations.attention_prompts import build_attention_explain_prompt
from neuron_explainer.explanations.llm import LlmClient
from neuron_explainer.explanations.neuron_prompts import FEW_SHOT, FewShotNeuron, build_neuron_prompt
from neuron_explainer.explanations.protocols import Explained
from neuron_explainer.explanations.splits import train_records
from neuron_explainer.explanations.token_count import TokenCounter, counter_for
from neuron_explainer.nodes import NodeId


class FewShotSource(Protocol):
    """Few-shot neurons for explaining ``node``: other nodes' train records and good explanations."""

    async def few_shot(self, node: NodeId, n: int) -> list[tuple[str, FewShotNeuron]]:
        """Up to ``n`` (node id, example) pairs; fewer (or none) when the dataset has too few."""
        ...


def _clean(text: str | None, model: str) -> str:
    cleaned = (text or "").strip().removesuffix(".").strip()
    if not cleaned:
        raise LlmBadReply("the explainer answered with an empty explanation", model=model)
    return cleaned


class TokenActivationPairExplainer:
    """Neurons and latents: records as token<tab>activation (0-10), "this neuron activates for ..."."""

    def __init__(
        self,
        llm: LlmClient,
        model: str | None = None,
        max_tokens: int = 60,
        temperature: float = 1.0,
        *,
        few_shot: FewShotSource | None = None,
        node: NodeId | None = None,
        counter: TokenCounter | None = None,
    ) -> None:
        self.llm = llm
        self.model = model or llm.settings.explainer_model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.few_shot = few_shot
        self.node = node
        self.counter = counter

    async def _examples(self) -> tuple[list[FewShotNeuron], dict[str, object]]:
        if self.few_shot is not None and self.node is not None:
            found = await self.few_shot.few_shot(self.node, len(FEW_SHOT))
            if len(found) == len(FEW_SHOT):
                return [e for _, e in found], {"few_shot": "dataset", "few_shot_nodes": [n for n, _ in found]}
        return list(FEW_SHOT), {"few_shot": "built-in", "few_shot_nodes": []}

    async def explain(self, record: NeuronRecord) -> Explained:
        examples, provenance = await self._examples()
        counter = self.counter or await counter_for(self.model)
        messages, tokens = build_neuron_prompt(
            train_records(record), max_tokens=self.max_tokens, few_shot=examples, count=counter.count
        )
        reply = await self.llm.chat(
            messages, model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
        )
        text = _clean(reply.choices[0].message.content if reply.choices else None, self.model)
        return Explained(text, {**provenance, "prompt_tokens": tokens, "token_counter": counter.name})


class AttentionHeadExplainer:
    """Heads: the 5 strongest token pairs over the train records, marked ``**to**`` / ``[[from]]``."""

    def __init__(
        self,
        llm: LlmClient,
        model: str | None = None,
        max_tokens: int = 50,
        temperature: float = 1.0,
        n_pairs: int = 5,
    ) -> None:
        self.llm = llm
        self.model = model or llm.settings.explainer_model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.n_pairs = n_pairs

    async def explain(self, record: NeuronRecord) -> Explained:
        records = train_records(record)
        messages = build_attention_explain_prompt(records, top_pairs(records, self.n_pairs))
        reply = await self.llm.chat(
            messages, model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
        )
        text = _clean(reply.choices[0].message.content if reply.choices else None, self.model)
        return Explained(text, {"few_shot": "built-in", "few_shot_nodes": []})
