"""Explain and score methods as GraphQL enums, made from the method registry (a new method is a new
member after re-exporting the SDL); members are the names upper-cased (``top-tokens`` -> ``TOP_TOKENS``)."""

from __future__ import annotations

import enum

import strawberry

from neuron_explainer.explanations.methods import MethodRegistry


def _members(names: list[str]) -> dict[str, str]:
    return {name.upper().replace("-", "_"): name for name in names}


ExplainMethod: type[enum.Enum] = strawberry.enum(  # type: ignore[call-overload]
    enum.Enum("ExplainMethod", _members(list(MethodRegistry.explainer_names()))),
    name="ExplainMethod",
    description="How an explanation is written: BASELINE asks the LLM; TOP_TOKENS lists the top tokens (no LLM).",
)
ScoreMethod: type[enum.Enum] = strawberry.enum(  # type: ignore[call-overload]
    enum.Enum("ScoreMethod", _members(list(MethodRegistry.scorer_names()))),
    name="ScoreMethod",
    description="How an explanation is scored: BASELINE (LLM, logprob-free), ALL_AT_ONCE (LLM prompt logprobs), "
    "TOKEN_LOOKUP (no LLM).",
)


def method_name(value: enum.Enum | None) -> str | None:
    return None if value is None else str(value.value)


def method_names(values: list[enum.Enum] | None) -> list[str] | None:
    return None if values is None else [str(v.value) for v in values]
