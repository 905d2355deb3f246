"""Prompts for the detection and fuzzing scorers (the texts and examples are ours).

Both show numbered excerpts, one per line (newlines inside a record are written ``\\n``), and ask for
``{"answers": [...]}``: one 1 or 0 per excerpt, in order. Fuzzing marks tokens ``<<like this>>``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from neuron_explainer.explanations.reply_json import list_in_reply

LEFT, RIGHT = "<<", ">>"

DETECTION_SYSTEM = (
    "You are checking an explanation of one neuron in a language model. The explanation says what the "
    "neuron responds to. Below it are numbered text excerpts. For each excerpt, decide from the explanation "
    "alone whether the neuron responds somewhere in that excerpt. Reply with only a JSON object "
    '{"answers": [...]} holding one 1 (responds) or 0 (does not) per excerpt, in the order given.'
)

FUZZING_SYSTEM = (
    "You are checking an explanation of one neuron in a language model. In each numbered excerpt below "
    f"some tokens are marked {LEFT}like this{RIGHT}. Decide for each excerpt whether the marked tokens are "
    "ones the explanation says the neuron responds to: 1 if every marked token fits the explanation, 0 if "
    'any does not. Reply with only a JSON object {"answers": [...]} holding one 1 or 0 per excerpt, in order.'
)

_DETECTION_EXAMPLE = (
    "dates written as a month and a day",
    ["We met on June 4 at noon.", "The cat slept all afternoon.", "Rent is due March 1 every year."],
    [1, 0, 1],
)
_FUZZING_EXAMPLE = (
    "negations such as not and never",
    [f"I do {LEFT}not{RIGHT} like it.", f"She {LEFT}ran{RIGHT} home quickly.", f"We {LEFT}never{RIGHT} left."],
    [1, 0, 1],
)


def excerpt(tokens: Sequence[str], highlighted: Sequence[int] = ()) -> str:
    marked = set(highlighted)
    parts = [f"{LEFT}{t}{RIGHT}" if n in marked else t for n, t in enumerate(tokens)]
    return "".join(parts).replace("\r", "\\r").replace("\n", "\\n")


def _user(explanation: str, excerpts: Sequence[str]) -> str:
    lines = "\n".join(f"{n}: {text}" for n, text in enumerate(excerpts, start=1))
    return f"Explanation: this neuron responds to {explanation}.\n\nExcerpts:\n{lines}"


def _answers(values: Sequence[int]) -> str:
    return json.dumps({"answers": list(values)})


def build_classifier_prompt(system: str, explanation: str, excerpts: Sequence[str]) -> list[dict[str, str]]:
    example = _DETECTION_EXAMPLE if system is DETECTION_SYSTEM else _FUZZING_EXAMPLE
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": _user(example[0], example[1])},
        {"role": "assistant", "content": _answers(example[2])},
        {"role": "user", "content": _user(explanation, excerpts)},
    ]


def parse_answers(text: str, n: int) -> list[int]:
    """The 0/1 answers of a reply, or ``ValueError`` saying what is wrong with it."""
    answers = list_in_reply(text, "answers", n, "excerpts")
    out = []
    for k, a in enumerate(answers):
        if isinstance(a, bool):
            a = int(a)
        if a not in (0, 1) or isinstance(a, float) and not a.is_integer():
            raise ValueError(f"answer {k} is {a!r}, not 0 or 1")
        out.append(int(a))
    return out


def reask(problem: str, n: int) -> dict[str, str]:
    return {
        "role": "user",
        "content": f'That reply could not be used: {problem}. Reply with only {{"answers": [...]}}, exactly {n} '
        "values, each 1 or 0.",
    }
