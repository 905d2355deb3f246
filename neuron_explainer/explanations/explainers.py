"""LLM explainers: write one sentence about what a node does from its train records (reference §5.2).

The reply is returned stripped of surrounding whitespace and a final period (the original kept the
raw completion, e.g. ``" words about cats."``). An empty reply is ``LlmBadReply``.
"""

from __future__ import annotations

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import LlmBadReply
from neuron_explainer.explanations.attention_pairs import top_pairs
from neuron_explainer.explanations.attention_prompts import build_attention_explain_prompt
from neuron_explainer.explanations.llm import LlmClient
from neuron_explainer.explanations.neuron_prompts import build_neuron_prompt
from neuron_explainer.explanations.splits import train_records


def _clean(text: str | None, model: str) -> str:
    cleaned = (text or "").strip().removesuffix(".").strip()
    if not cleaned:
        raise LlmBadReply("the explainer answered with an empty explanation", model=model)
    return cleaned


class TokenActivationPairExplainer:
    """Neurons and latents: records as token<tab>activation (0-10), "this neuron activates for ..."."""

    def __init__(
        self, llm: LlmClient, model: str | None = None, max_tokens: int = 60, temperature: float = 1.0
    ) -> None:
        self.llm = llm
        self.model = model or llm.settings.explainer_model
        self.max_tokens = max_tokens
        self.temperature = temperature

    async def explain(self, record: NeuronRecord) -> str:
        messages = build_neuron_prompt(train_records(record), max_tokens=self.max_tokens)
        reply = await self.llm.chat(
            messages, model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
        )
        return _clean(reply.choices[0].message.content if reply.choices else None, self.model)


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

    async def explain(self, record: NeuronRecord) -> str:
        records = train_records(record)
        messages = build_attention_explain_prompt(records, top_pairs(records, self.n_pairs))
        reply = await self.llm.chat(
            messages, model=self.model, max_tokens=self.max_tokens, temperature=self.temperature
        )
        return _clean(reply.choices[0].message.content if reply.choices else None, self.model)
