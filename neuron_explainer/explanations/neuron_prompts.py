"""The token-activation-pair explanation prompt for neurons and latents (reference §5.2).

Structure as the original: a system message, then per example neuron one user turn listing its
records as ``token<tab>activation`` (activations 0-10, normalized per section against the max of
the records shown) ending in "this neuron activates for", and one assistant turn with the
explanation; the target neuron comes last. The text and the examples are ours.

Token counts come from the caller's counter (``explanations.token_count``: exact with tiktoken, else a
bound that never under-counts); when the prompt is over budget, few-shot records are dropped one at a
time (as the original does), then target records from the end. The few-shot neurons are the built-in
``FEW_SHOT`` unless the caller passes others (real records of the dataset's own nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from neuron_explainer.activations.records import ActivationRecord
from neuron_explainer.explanations.splits import normalize_0_10

CONTEXT_TOKENS = 4097
"""The original's ``ContextSize.FOUR_K`` budget for prompt + completion."""

SYSTEM = (
    "We are studying neurons in a neural network. Each neuron responds to some particular thing in "
    "short pieces of text. Look at the tokens a neuron activates on and describe in a single sentence "
    "what the neuron is looking for. Do not list example words.\n\n"
    "Each line below is token<tab>activation. Activations run from 0 to 10: 0 means the neuron does "
    "not respond, larger values mean a stronger match. Most tokens have activation 0."
)


@dataclass(frozen=True, slots=True)
class FewShotNeuron:
    records: list[ActivationRecord]
    explanation: str


def _rec(pairs: str) -> ActivationRecord:
    tokens, acts = [], []
    for item in pairs.split("|"):
        tok, act = item.rsplit("=", 1)
        tokens.append(tok)
        acts.append(float(act))
    return ActivationRecord(tokens=tokens, activations=acts)


FEW_SHOT: list[FewShotNeuron] = [
    FewShotNeuron(
        records=[
            _rec("The=0| train= 0| left= 0| at= 0| 7=0|:=0|15=9| in= 0| the= 0| morning=3|.=0"),
            _rec("We= 0| met= 0| around= 0| 11=0|:=0|30=10| on= 0| Tuesday= 1"),
            _rec("Doors= 0| open= 0| at= 0| 6=1| pm=4| sharp= 0|.=0"),
        ],
        explanation="times of day, mostly the minutes after a colon in a clock time",
    ),
    FewShotNeuron(
        records=[
            _rec('She= 0| said= 0|,= 0| "=0|I= 0| can= 0|\'t=8| go= 0|."=0'),
            _rec("It= 0| doesn=2|'t=10| matter= 0| anymore= 0|.=0"),
            _rec("They= 0| won=1|'t=9| be= 0| back= 0| soon= 0"),
        ],
        explanation="the contraction n't in negated verbs",
    ),
    FewShotNeuron(
        records=[
            _rec("def= 0| load=0|(=0|path=0|):=0|\n=0|    =0|with=6| open=7|(=0|path=0|)=0| as=5| f=2"),
            _rec("with=7| lock=1|:=0| counter=0| +=0|= 0|1=0"),
        ],
        explanation="Python with-statements opening a context manager",
    ),
]


def utf8_bytes(text: str) -> int:
    """The default count: UTF-8 bytes, an upper bound on any byte-level BPE count."""
    return len(text.encode("utf-8", "surrogatepass"))


MESSAGE_OVERHEAD_TOKENS = 4
"""Tokens a chat format adds around each message (role and separators; OpenAI's documented figure)."""


def _section(records: Sequence[ActivationRecord]) -> str:
    max_act = max((a for r in records for a in r.activations), default=0.0)
    lines = []
    for record in records:
        lines.append("<start>")
        for token, value in zip(record.tokens, normalize_0_10(record.activations, max_act), strict=True):
            lines.append(f"{token}\t{value}")
        lines.append("<end>")
    return "\n".join(lines)


def _user_turn(number: int, records: Sequence[ActivationRecord]) -> str:
    return (
        f"Neuron {number}\nActivations:\n{_section(records)}\n\n"
        f"Explanation of neuron {number} behavior: this neuron activates for"
    )


def _messages(few_shot: list[FewShotNeuron], target: Sequence[ActivationRecord]) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}]
    for i, example in enumerate(few_shot, start=1):
        if example.records:
            messages.append({"role": "user", "content": _user_turn(i, example.records)})
            messages.append({"role": "assistant", "content": f" {example.explanation}."})
    messages.append({"role": "user", "content": _user_turn(len(few_shot) + 1, target)})
    return messages


def build_neuron_prompt(
    target: Sequence[ActivationRecord],
    max_tokens: int = 60,
    context_tokens: int = CONTEXT_TOKENS,
    *,
    few_shot: Sequence[FewShotNeuron] | None = None,
    count: Callable[[str], int] = utf8_bytes,
) -> tuple[list[dict[str, str]], int]:
    """Chat messages explaining ``target`` (the train records), trimmed to the context budget, and their
    token count (by ``count``)."""
    examples = [FewShotNeuron(list(e.records), e.explanation) for e in (FEW_SHOT if few_shot is None else few_shot)]
    records = list(target)
    while True:
        messages = _messages(examples, records)
        tokens = sum(count(m["content"]) + MESSAGE_OVERHEAD_TOKENS for m in messages)
        if tokens + max_tokens <= context_tokens:
            return messages, tokens
        longest = max(examples, key=lambda e: len(e.records), default=None)
        if longest is not None and longest.records:
            longest.records.pop()
        elif len(records) > 1:
            records.pop()
        else:
            return messages, tokens
