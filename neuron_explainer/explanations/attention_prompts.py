"""Prompts about attention heads: the explainer's (§5.2) and the one-at-a-time scorer's (§5.5).

Both show a token pair inside its sequence with the attended ("to") token as ``**to**`` and the
attending ("from") token as ``[[from]]`` (``[[**self**]]`` when they coincide). Texts and examples
are ours; the structure follows the original.
"""

from __future__ import annotations

from collections.abc import Sequence

from neuron_explainer.activations.records import ActivationRecord
from neuron_explainer.explanations.attention_pairs import TokenPair, mark_pair

SEPARATOR = "<|sequence_separator|>"

EXPLAIN_SYSTEM = (
    "We are studying attention heads in a transformer language model. An attention head moves "
    "information from an earlier token (the one attended to) to a later token (the one attending). "
    "You will see the token pairs a head attends most strongly between, each inside its text: the "
    "earlier, attended-to token is marked **like this** and the later, attending token [[like this]]; "
    "a token attending to itself is marked [[**like this**]]. Describe the head in one sentence of "
    'the form "attends to {earlier pattern} from {later pattern}".'
)

# (texts with marked pairs, (to, from) list, explanation)
EXPLAIN_FEW_SHOT: list[tuple[list[str], list[tuple[str, str]], str]] = [
    (
        [
            "The **cat** sat on the mat because the [[it]] was tired",
            "When **Mary** called, [[she]] said hello",
        ],
        [("cat", "it"), ("Mary", "she")],
        "attends to the noun a pronoun refers to from the pronoun",
    ),
    (
        ["**(**a + b) * [[c]]", "print**(**x, [[y]]"],
        [("(", "c"), ("(", "y")],
        "attends to the most recent open parenthesis from tokens inside it",
    ),
    (
        ["[[**The**]] quick brown fox", "[[**In**]] 1999 we moved"],
        [("The", "The"), ("In", "In")],
        "attends to the first token of the text from itself",
    ),
]

SCORE_SYSTEM = (
    "We are studying attention heads in a transformer language model. You get an explanation of a "
    "head and a text in which one token pair is marked: the earlier, attended-to token **like this** "
    "and the later, attending token [[like this]]. Answer 1 if the explanation says the head attends "
    "strongly from the [[marked]] token to the **marked** token, else 0. Answer with one digit."
)

SCORE_FEW_SHOT: list[tuple[str, str, str]] = [
    (
        "attends to the noun a pronoun refers to from the pronoun",
        "When **Mary** called, [[she]] said hello",
        "1",
    ),
    (
        "attends to the noun a pronoun refers to from the pronoun",
        "When Mary **called**, she [[said]] hello",
        "0",
    ),
    ("attends to the most recent open parenthesis from tokens inside it", "print**(**x, [[y]]", "1"),
    ("attends to the most recent open parenthesis from tokens inside it", "**print**([[x]], y", "0"),
]


def _pairs_turn(texts: Sequence[str], pairs: Sequence[tuple[str, str]]) -> str:
    listed = ", ".join(f"({to!r}, {frm!r})" for to, frm in pairs)
    return (
        f"Texts:\n{SEPARATOR.join(texts)}\n\nStrongest pairs (to_token, from_token): {listed}\n\n"
        "Explanation of attention head behavior: this attention head"
    )


def build_attention_explain_prompt(
    records: Sequence[ActivationRecord], pairs: Sequence[TokenPair]
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": EXPLAIN_SYSTEM}]
    for texts, listed, explanation in EXPLAIN_FEW_SHOT:
        messages.append({"role": "user", "content": _pairs_turn(texts, listed)})
        messages.append({"role": "assistant", "content": f" {explanation}."})
    texts = [mark_pair(records[p.record].tokens, p.query, p.key) for p in pairs]
    listed = [(records[p.record].tokens[p.key], records[p.record].tokens[p.query]) for p in pairs]
    messages.append({"role": "user", "content": _pairs_turn(texts, listed)})
    return messages


def _score_turn(explanation: str, marked: str) -> str:
    return f"Explanation: this attention head {explanation}\nText: {marked}\nAnswer:"


def build_attention_score_prompt(explanation: str, tokens: Sequence[str], query: int, key: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SCORE_SYSTEM}]
    for example_explanation, marked, answer in SCORE_FEW_SHOT:
        messages.append({"role": "user", "content": _score_turn(example_explanation, marked)})
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user", "content": _score_turn(explanation, mark_pair(tokens, query, key))})
    return messages
