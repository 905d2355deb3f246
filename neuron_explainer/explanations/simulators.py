"""Simulators: predict a node's activation on every token of a sequence from an explanation alone.

Predictions are on the 0-10 scale (``SIMULATED_NORMALIZED_ACTIVATIONS``); the correlation score is
scale-free, so no calibration is applied (the original server did not calibrate either).
A reply we cannot use is never turned into zeros: after the re-asks the sequence fails with
``LlmBadReply`` and so does the job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

from neuron_explainer.errors import LlmBadReply
from neuron_explainer.explanations.llm import LlmClient
from neuron_explainer.explanations.reply_json import list_in_reply
from neuron_explainer.explanations.results import ActivationScale, SequenceSimulation
from neuron_explainer.explanations.simulation_prompts import (
    START,
    UNKNOWN,
    build_completion_simulation_prompt,
    build_json_simulation_prompt,
    reask_message,
)

_VALUES = [str(v) for v in range(11)]


class Simulator(Protocol):
    async def simulate(self, explanation: str, tokens: Sequence[str]) -> SequenceSimulation: ...


def parse_json_activations(text: str, n_tokens: int) -> list[float]:
    """The activations of a JSON reply, or ValueError saying what is wrong with it.

    Accepts ``{"activations": [{"token": .., "activation": v}, ..]}`` or a bare list of numbers
    under ``activations``; every value must be a number in [0, 10]. Token texts are not compared
    (models normalise whitespace), only the count.
    """
    entries = list_in_reply(text, "activations", n_tokens, "tokens")
    values = []
    for n, entry in enumerate(entries):
        value: Any = entry.get("activation") if isinstance(entry, dict) else entry
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 10:
            raise ValueError(f"activation {n} is {value!r}, not a number from 0 to 10")
        values.append(float(value))
    return values


class LogprobFreeSimulator:
    """Chat + JSON (the original server's default), with JSON mode and re-asks on malformed replies."""

    def __init__(self, llm: LlmClient, model: str | None = None, max_reasks: int = 2, max_tokens: int = 2000) -> None:
        self.llm = llm
        self.model = model or llm.settings.simulator_model
        self.max_reasks = max_reasks
        self.max_tokens = max_tokens

    async def simulate(self, explanation: str, tokens: Sequence[str]) -> SequenceSimulation:
        messages = build_json_simulation_prompt(explanation, tokens)
        problem = ""
        for _ in range(self.max_reasks + 1):
            reply = await self.llm.chat(messages, model=self.model, max_tokens=self.max_tokens, json_mode=True)
            text = (reply.choices[0].message.content or "") if reply.choices else ""
            try:
                values = parse_json_activations(text, len(tokens))
            except ValueError as e:
                problem = str(e)
                messages = [
                    *messages,
                    {"role": "assistant", "content": text[:4000]},
                    reask_message(problem, len(tokens)),
                ]
                continue
            return SequenceSimulation(
                tokens=list(tokens),
                expected_activations=values,
                activation_scale=ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS,
                distribution_values=[],
                distribution_probabilities=[],
            )
        raise LlmBadReply(
            f"simulator reply unusable after {self.max_reasks + 1} tries: {problem}",
            model=self.model,
            problem=problem,
        )


def expected_value(top_logprobs: dict[str, float]) -> tuple[float, list[float], list[float]]:
    """Expected value over the "0".."10" entries, renormalised; also the distribution itself."""
    probs: dict[int, float] = {}
    for token, logprob in top_logprobs.items():
        if token.strip() in _VALUES:
            value = int(token.strip())
            probs[value] = probs.get(value, 0.0) + math.exp(logprob)
    total = sum(probs.values())
    if total <= 0:
        raise ValueError("no value 0..10 among the top logprobs")
    values = sorted(probs)
    return (
        sum(v * probs[v] for v in values) / total,
        [float(v) for v in values],
        [probs[v] / total for v in values],
    )


class AllAtOnceSimulator:
    """The paper's method: one ``/completions`` call with ``echo=True`` reads every prediction from the
    prompt's own logprobs. Needs an endpoint serving prompt logprobs (vLLM; not OpenAI's chat models)."""

    def __init__(self, llm: LlmClient, model: str | None = None, top_logprobs: int = 15) -> None:
        self.llm = llm
        self.model = model or llm.settings.simulator_model
        self.top_logprobs = top_logprobs

    async def simulate(self, explanation: str, tokens: Sequence[str]) -> SequenceSimulation:
        prompt = build_completion_simulation_prompt(explanation, tokens)
        reply = await self.llm.complete(prompt, model=self.model, logprobs=self.top_logprobs)
        logprobs = reply.choices[0].logprobs if reply.choices else None
        if logprobs is None or not logprobs.tokens or not logprobs.top_logprobs or not logprobs.text_offset:
            raise LlmBadReply(
                "completion reply has no prompt logprobs (does the endpoint support echo?)", model=self.model
            )
        section = prompt.rfind(START)
        expected: list[float] = []
        dist_values: list[list[float]] = []
        dist_probs: list[list[float]] = []
        for token, offset, top in zip(logprobs.tokens, logprobs.text_offset, logprobs.top_logprobs, strict=False):
            if offset < section or token.strip() != UNKNOWN:
                continue
            if not (token.startswith("\t") or prompt[offset - 1 : offset] == "\t"):
                continue
            try:
                ev, values, probs = expected_value(top or {})
            except ValueError as e:
                raise LlmBadReply(f"token {len(expected)}: {e}", model=self.model) from e
            expected.append(ev)
            dist_values.append(values)
            dist_probs.append(probs)
        if len(expected) != len(tokens):
            raise LlmBadReply(
                f"found {len(expected)} predictions for {len(tokens)} tokens in the echoed prompt",
                model=self.model,
            )
        return SequenceSimulation(
            tokens=list(tokens),
            expected_activations=expected,
            activation_scale=ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS,
            distribution_values=dist_values,
            distribution_probabilities=dist_probs,
        )
