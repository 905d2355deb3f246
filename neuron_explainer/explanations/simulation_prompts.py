"""Prompts asking an LLM to predict a node's activations from an explanation (reference §5.3).

Logprob-free (chat, JSON): as the original, few-shot turns are JSON documents whose
``activations`` entries are null in the user turn and filled in the assistant turn. Unlike the
original, the few-shot values are on the 0-10 scale the instructions ask for.

All-at-once (legacy completions with prompt logprobs): every target token is followed by
``unknown``; the model's distribution over "0".."10" at each ``unknown`` is the prediction.
Few-shot neurons here show all their values (the original revealed only some positions).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from neuron_explainer.explanations.splits import normalize_0_10

JSON_SYSTEM = (
    "We are studying neurons in a neural network. Each neuron responds to some particular thing in "
    'text. You get an explanation of what a neuron looks for ("to_find") and a document split into '
    "tokens. Predict the neuron's activation on every token as an integer from 0 (no response) to 10 "
    "(strongest). Most tokens are 0. Reply with the same JSON object, every null replaced by your "
    "prediction: exactly one entry per token, in order, tokens unchanged."
)

_EXAMPLES: list[tuple[str, list[str], list[int]]] = [
    (
        "the contraction n't in negated verbs",
        ["It", " doesn", "'t", " matter", " anymore", "."],
        [0, 1, 10, 0, 0, 0],
    ),
    (
        "times of day written as clock times",
        ["Doors", " open", " at", " 6", ":", "30", " pm"],
        [0, 0, 0, 3, 2, 9, 6],
    ),
]


def _document(explanation: str, tokens: Sequence[str], values: Sequence[int] | None) -> str:
    entries = [{"token": t, "activation": None if values is None else values[n]} for n, t in enumerate(tokens)]
    return json.dumps({"to_find": explanation, "document": "".join(tokens), "activations": entries}, ensure_ascii=False)


def build_json_simulation_prompt(explanation: str, tokens: Sequence[str]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": JSON_SYSTEM}]
    for example_explanation, example_tokens, values in _EXAMPLES:
        messages.append({"role": "user", "content": _document(example_explanation, example_tokens, None)})
        messages.append({"role": "assistant", "content": _document(example_explanation, example_tokens, values)})
    messages.append({"role": "user", "content": _document(explanation, tokens, None)})
    return messages


def reask_message(problem: str, n_tokens: int) -> dict[str, str]:
    return {
        "role": "user",
        "content": (
            f"That reply could not be used: {problem}. Reply again with only the JSON object, whose "
            f'"activations" list has exactly {n_tokens} entries with integer activations from 0 to 10.'
        ),
    }


COMPLETION_HEADER = (
    "We are studying neurons in a neural network. Each neuron responds to some particular thing in "
    "text. Given an explanation of a neuron, predict its activation (0-10) on each token.\n\n"
)
UNKNOWN = "unknown"
START = "<start>"


def _completion_neuron(number: int, explanation: str, tokens: Sequence[str], values: Sequence[int] | None) -> str:
    lines = [
        f"Neuron {number}",
        f"Explanation of neuron {number} behavior: this neuron activates for {explanation}.",
        "Activations:",
        START,
    ]
    for n, token in enumerate(tokens):
        lines.append(f"{token}\t{UNKNOWN if values is None else values[n]}")
    lines.append("<end>")
    return "\n".join(lines) + "\n\n"


def build_completion_simulation_prompt(explanation: str, tokens: Sequence[str]) -> str:
    """Ends with the target's ``<start>`` section; every target token is followed by ``unknown``."""
    parts = [COMPLETION_HEADER]
    for n, (example_explanation, example_tokens, values) in enumerate(_EXAMPLES, start=1):
        parts.append(
            _completion_neuron(n, example_explanation, example_tokens, normalize_0_10([float(v) for v in values], 10.0))
        )
    parts.append(_completion_neuron(len(_EXAMPLES) + 1, explanation, tokens, None))
    return "".join(parts)
