"""What a request will cost, estimated from its document and variables before anything runs.

Each field's price is its ``@policy`` (``declare.py``); prices multiply down the tree:
``nodes(first: 50) { topActivations(first: 20) }`` is 50 x 20 records, and 100 aliases of a node are
100 nodes. Fragments on several concrete types are all counted (an over-estimate, never an
under-estimate). A fragment is priced once per parent type and scaled at each spread (a price is
linear in its multiplier), so pricing is linear in the document, whatever its spreads.

Introspection is priced too (``__schema`` a whole schema's worth, ``__type`` a type's). A job costs
even when its method calls no LLM (``JOB`` plus one unit per scored sequence); an LLM call is 100.

Prompt tokens are estimated as UTF-8 bytes / 3 rounded up (GPT-2 BPE averages ~4 bytes per token on
English and never more than one token per byte, so long non-ASCII text is under-counted at most 3x);
no tokenizer runs on the event loop for this. Variables are read raw, before coercion: a value of the
wrong type prices as the field's default and then fails coercion as usual.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    get_named_type,
    is_leaf_type,
    value_from_ast_untyped,
)

from neuron_explainer.schema.policy.declare import Policy, Price, policy_of

RECORD = 1.0
TOKEN = 1.0
LLM_CALL = 100.0
LIVE_RECORD = 10.0
"""A record computed live over the reference corpus (``source: LIVE``) instead of read."""
JOB = 10.0
"""Any job, before its calls: a job whose method calls no LLM still reads records and writes results."""
NO_LLM_SEQUENCE = 1.0
NO_LLM_METHODS = frozenset({"top-tokens", "token-lookup", "embedding"})
CLASSIFIER_METHODS = frozenset({"detection", "fuzzing"})
CLASSIFIER_EXAMPLES_PER_CALL = 5
"""detection / fuzzing ask about this many examples per LLM call (``explanations.classifiers``)."""
DEFAULT_SCORED_SEQUENCES = 20
"""Simulator calls assumed for a scoring job without ``maxSequences`` (the scorer's default plan is ~10)."""
INTROSPECTION = {"__schema": 1000.0, "__type": 20.0}
"""``__schema`` answers with every type (~100 KB here), ``__type`` with one; ``__typename`` is free."""

Args = Mapping[str, Any]


def prompt_tokens(text: object) -> int:
    if not isinstance(text, str):
        return 1
    return max(1, math.ceil(len(text.encode("utf-8", "replace")) / 3))


def _count(args: Args, name: str | None, default: int) -> float:
    """``args[name]``, or ``default`` when absent; ``name`` may list alternatives (``first|last``, a
    connection paged either way): the largest one given counts."""
    given = [
        float(value)
        for value in (args.get(n) for n in (name or "").split("|") if n)
        if not isinstance(value, bool) and isinstance(value, int | float)
    ]
    return max(0.0, *given) if given else float(default)


def _name(value: object) -> object:
    """A method as the registry names it (``TOKEN_LOOKUP`` -> ``token-lookup``); None stays None."""
    return value.lower().replace("_", "-") if isinstance(value, str) else value


def _job(policy: Policy, args: Args) -> tuple[float, int]:
    """(units, LLM calls) of an explain or score mutation, from its input: a job, then per scoring method
    its calls (one per sequence; detection and fuzzing one per 5 examples) or, without an LLM, one unit
    per sequence. A method left to the server's default is priced as an LLM method (the dearer guess)."""
    spec = args.get("input")
    spec = spec if isinstance(spec, Mapping) else {}
    explains = policy.price is Price.EXPLAIN_JOB
    method = _name(spec.get("method"))
    listed = spec.get("methods")
    if explains:
        scoring = [_name(spec.get("scoreMethod"))] if spec.get("scoreMethod") is not None else []
    else:
        scoring = [_name(m) for m in listed] if isinstance(listed, list) else [method]
    calls = 0.0
    units = JOB
    if explains and method not in NO_LLM_METHODS:
        calls += 1
    sequences = _count(spec, "maxSequences", DEFAULT_SCORED_SEQUENCES)
    for name in scoring:
        if name in NO_LLM_METHODS:
            units += NO_LLM_SEQUENCE * sequences
        elif name in CLASSIFIER_METHODS:
            calls += math.ceil(sequences / CLASSIFIER_EXAMPLES_PER_CALL)
        else:
            calls += sequences
    return units + LLM_CALL * calls, int(calls)


def _patch_tokens(args: Args) -> float:
    """Patching (``ablations[].fromPrompt``) runs a forward over each distinct source prompt first."""
    ablations = args.get("ablations")
    if not isinstance(ablations, list):
        return 0.0
    sources = {a.get("fromPrompt") for a in ablations if isinstance(a, Mapping)}
    return sum(float(prompt_tokens(t)) for t in sources if isinstance(t, str))


def price(policy: Policy | None, returns_object: bool, args: Args) -> tuple[float, float, int]:
    """(own units, multiplier of the selection, LLM calls) of one field occurrence."""
    kind = policy.price if policy is not None else Price.PLAIN
    if kind is Price.PLAIN:
        return (1.0 if returns_object else 0.0), 1.0, 0
    assert policy is not None
    if kind is Price.FIXED:
        return policy.units, 1.0, 0
    if kind is Price.RECORDS:
        per = LIVE_RECORD if args.get("source") == "LIVE" else RECORD
        return per * _count(args, policy.arg, policy.default), 0.0, 0
    if kind is Price.PER_ITEM:
        return 1.0, _count(args, policy.arg, policy.default), 0
    if kind is Price.LIVE_PROMPT:
        tokens = float(prompt_tokens(args.get(policy.arg or "text", "")))
        return TOKEN * (tokens + _patch_tokens(args)), tokens, 0
    units, calls = _job(policy, args)
    return units, 1.0, calls


@dataclass
class CostEstimate:
    total: float = 0.0
    by_field: dict[str, float] = field(default_factory=dict)
    llm_mutations: int = 0
    """Explain/score mutation fields that will call the LLM (aliases counted): what the LLM rate limit takes."""
    jobs: int = 0
    """Explain/score mutation fields (aliases counted): what the per-caller jobs quota takes."""
    live: int = 0
    """Fields that run the live model on a prompt: a full live queue refuses the request up front."""

    def top(self, n: int = 5) -> dict[str, float]:
        ranked = sorted(self.by_field.items(), key=lambda kv: -kv[1])[:n]
        return {k: round(v, 1) for k, v in ranked}

    def add(self, other: CostEstimate, scale: float) -> None:
        self.total += other.total * scale
        for key, value in other.by_field.items():
            self.by_field[key] = self.by_field.get(key, 0.0) + value * scale
        self.llm_mutations += other.llm_mutations
        self.jobs += other.jobs
        self.live += other.live

    def charge(self, key: str, units: float) -> None:
        self.by_field[key] = self.by_field.get(key, 0.0) + units
        self.total += units


class CostEstimator:
    """``estimate(document, operation, variables)``; one per schema, reused across requests."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self._policies: dict[tuple[str, str], Policy | None] = {}

    def policy(self, parent: GraphQLObjectType | GraphQLInterfaceType, name: str) -> Policy | None:
        key = (parent.name, name)
        if key not in self._policies:
            self._policies[key] = policy_of(parent, name)
        return self._policies[key]

    def estimate(
        self, document: DocumentNode, operation: OperationDefinitionNode, variables: Mapping[str, Any] | None
    ) -> CostEstimate:
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return CostEstimate()
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        walk = _Walk(self, fragments, dict(variables or {}))
        return walk.selections(root, operation.selection_set, frozenset())


@dataclass
class _Walk:
    estimator: CostEstimator
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    memo: dict[tuple[str, str], CostEstimate] = field(default_factory=dict)

    def selections(self, parent: Any, selection_set: SelectionSetNode | None, seen: frozenset[str]) -> CostEstimate:
        """The cost of one instance of ``selection_set`` on ``parent`` (multiplier 1)."""
        out = CostEstimate()
        if selection_set is None:
            return out
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.field(parent, selection, seen, out)
            elif isinstance(selection, InlineFragmentNode):
                typed = parent
                if selection.type_condition is not None:
                    typed = self.estimator.schema.get_type(selection.type_condition.name.value) or parent
                out.add(self.selections(typed, selection.selection_set, seen), 1.0)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                typed = self.estimator.schema.get_type(fragment.type_condition.name.value) or parent
                key = (name, getattr(typed, "name", ""))
                if key not in self.memo:
                    self.memo[key] = self.selections(typed, fragment.selection_set, seen | {name})
                out.add(self.memo[key], 1.0)
        return out

    def field(self, parent: Any, node: FieldNode, seen: frozenset[str], out: CostEstimate) -> None:
        name = node.name.value
        if name in INTROSPECTION:
            out.charge(name, INTROSPECTION[name])
            return
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not isinstance(fields, dict) or name not in fields:
            return  # __typename and unknown fields (validation reports those) cost nothing here
        returns = get_named_type(fields[name].type)
        policy = self.estimator.policy(parent, name)
        own, child, calls = price(policy, not is_leaf_type(returns), self.arguments(node))
        if policy is not None and policy.price is Price.LIVE_PROMPT:
            out.live += 1
        if policy is not None and policy.price in (Price.EXPLAIN_JOB, Price.SCORE_JOB):
            out.jobs += 1
            out.llm_mutations += 1 if calls else 0
        if own:
            out.charge(f"{parent.name}.{name}", own)
        if child:
            out.add(self.selections(returns, node.selection_set, seen), child)

    def arguments(self, node: FieldNode) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for argument in node.arguments or ():
            value = value_from_ast_untyped(argument.value, self.variables)
            if value is not Undefined:
                args[argument.name.value] = value
        return args
