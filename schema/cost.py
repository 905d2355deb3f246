"""What a request will cost, estimated from its document and variables before anything runs.

Units: one stored record read = 1; one prompt token of a live forward, per node it is read for = 1;
one LLM call = 100. A field's price is looked up by its coordinate (``Type.field``, then
``Interface.field`` for each interface of the type); a field not in ``PRICES`` costs 1 when it returns
an object and 0 when it returns a scalar. Prices multiply down the tree: ``nodes(first: 50) {
topActivations(first: 20) }`` is 50 x 20 records, and 100 aliases of a node are 100 nodes. Fragments on
several concrete types are all counted (an over-estimate, never an under-estimate).

Prompt tokens are estimated as UTF-8 bytes / 3 rounded up (GPT-2 BPE averages ~4 bytes per token on
English and never more than one token per byte, so long non-ASCII text is under-counted at most 3x);
no tokenizer runs on the event loop for this. Variables are read raw, before coercion: a value of the
wrong type prices as the field's default and then fails coercion as usual.

Adding a priced field is one line in ``PRICES``.
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

RECORD = 1.0
TOKEN = 1.0
LLM_CALL = 100.0
LIVE_RECORD = 10.0
"""A record computed live over the reference corpus (``source: LIVE``) instead of read."""
NO_LLM_METHODS = frozenset({"top-tokens", "token-lookup"})
DEFAULT_SCORED_SEQUENCES = 20
"""Simulator calls assumed for a scoring job without ``maxSequences`` (the scorer's default plan is ~10)."""

Args = Mapping[str, Any]


def prompt_tokens(text: object) -> int:
    if not isinstance(text, str):
        return 1
    return max(1, math.ceil(len(text.encode("utf-8", "replace")) / 3))


def _count(args: Args, name: str | None, default: int) -> float:
    value = args.get(name) if name else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float(default)
    return max(0.0, float(value))


@dataclass(frozen=True)
class Fixed:
    units: float

    def price(self, args: Args) -> tuple[float, float]:
        return self.units, 1.0


@dataclass(frozen=True)
class Records:
    """A list of records: ``first`` (or ``default``) of them; their own fields are free."""

    arg: str | None = "first"
    default: int = 20

    def price(self, args: Args) -> tuple[float, float]:
        per = LIVE_RECORD if args.get("source") == "LIVE" else RECORD
        return per * _count(args, self.arg, self.default), 0.0


@dataclass(frozen=True)
class PerItem:
    """A list of objects: each selected child is paid ``first`` (or ``default``) times."""

    arg: str | None = "first"
    default: int = 50

    def price(self, args: Args) -> tuple[float, float]:
        return 1.0, _count(args, self.arg, self.default)


@dataclass(frozen=True)
class LivePrompt:
    """A forward pass on a prompt: its tokens, and every selected child is paid once per token."""

    args: tuple[str, ...] = ("prompt", "text")

    def price(self, args: Args) -> tuple[float, float]:
        text = next((args[a] for a in self.args if a in args), "")
        tokens = float(prompt_tokens(text))
        return TOKEN * tokens, tokens


@dataclass(frozen=True)
class LlmJob:
    """An explain or score mutation: one call to explain (explain jobs), one per scored sequence."""

    explains: bool

    def price(self, args: Args) -> tuple[float, float]:
        spec = args.get("input")
        spec = spec if isinstance(spec, Mapping) else {}
        method = spec.get("method")
        scoring = spec.get("scoreMethod") if self.explains else method
        calls = 0.0
        if self.explains and method not in NO_LLM_METHODS:
            calls += 1
        if (not self.explains or scoring is not None) and scoring not in NO_LLM_METHODS:
            calls += _count(spec, "maxSequences", DEFAULT_SCORED_SEQUENCES)
        return LLM_CALL * calls, 1.0


Price = Fixed | Records | PerItem | LivePrompt | LlmJob

PRICES: dict[str, Price] = {
    "Query.nodes": PerItem("first", 50),
    "NodeConnection.edges": Fixed(0),
    "Node.topActivations": Records("first", 20),
    "Node.randomSample": Records("first", 50),
    "Node.quantileSamples": Records("first", 50),
    "Node.stats": Records(None, 1),
    "Node.maxActivation": Records(None, 1),
    "Node.explanations": Records(None, 1),
    "Node.activations": LivePrompt(),
    "Query.prompt": LivePrompt(),
    "PromptAnalysis.activations": Fixed(1),
    "PromptAnalysis.loss": Fixed(1),
    "PromptAnalysis.logitDiff": Fixed(1),
    "PromptAnalysis.topLogits": Fixed(1),
    "PromptAnalysis.topNodes": Fixed(10),
    "Mutation.explainNode": LlmJob(explains=True),
    "Mutation.scoreExplanation": LlmJob(explains=False),
    "Subscription.jobEvents": Fixed(10),
    "Job.events": Records(None, 50),
}


@dataclass
class CostEstimate:
    total: float = 0.0
    by_field: dict[str, float] = field(default_factory=dict)
    llm_mutations: int = 0
    """Explain/score mutation fields that will call the LLM (aliases counted): what the LLM rate limit takes."""

    def top(self, n: int = 5) -> dict[str, float]:
        ranked = sorted(self.by_field.items(), key=lambda kv: -kv[1])[:n]
        return {k: round(v, 1) for k, v in ranked}


class CostEstimator:
    """``estimate(document, operation_name, variables)``; one per schema, reused across requests."""

    def __init__(self, schema: GraphQLSchema, prices: Mapping[str, Price] | None = None) -> None:
        self.schema = schema
        self.prices = dict(PRICES if prices is None else prices)

    def estimate(
        self, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
    ) -> CostEstimate:
        operation = _operation(document, operation_name)
        out = CostEstimate()
        if operation is None:
            return out
        root = self.schema.get_root_type(operation.operation)
        if root is None:
            return out
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        walk = _Walk(self, fragments, dict(variables or {}), out)
        walk.selections(root, operation.selection_set, 1.0, frozenset())
        return out

    def price_of(self, parent: GraphQLObjectType | GraphQLInterfaceType, name: str) -> Price | None:
        found = self.prices.get(f"{parent.name}.{name}")
        if found is None:
            for interface in parent.interfaces:
                found = self.prices.get(f"{interface.name}.{name}")
                if found is not None:
                    break
        return found


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


@dataclass
class _Walk:
    estimator: CostEstimator
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]
    out: CostEstimate

    def selections(
        self, parent: Any, selection_set: SelectionSetNode | None, mult: float, seen: frozenset[str]
    ) -> None:
        if selection_set is None or mult == 0:
            return
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.field(parent, selection, mult, seen)
            elif isinstance(selection, InlineFragmentNode):
                typed = parent
                if selection.type_condition is not None:
                    typed = self.estimator.schema.get_type(selection.type_condition.name.value) or parent
                self.selections(typed, selection.selection_set, mult, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if fragment is None or name in seen:
                    continue
                typed = self.estimator.schema.get_type(fragment.type_condition.name.value) or parent
                self.selections(typed, fragment.selection_set, mult, seen | {name})

    def field(self, parent: Any, node: FieldNode, mult: float, seen: frozenset[str]) -> None:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not isinstance(fields, dict) or name not in fields:
            return  # introspection and unknown fields (validation reports those) cost nothing here
        returns = get_named_type(fields[name].type)
        price = self.estimator.price_of(parent, name)
        if price is None:
            own, child = (0.0, 1.0) if is_leaf_type(returns) else (1.0, 1.0)
        else:
            own, child = price.price(self.arguments(node))
            if isinstance(price, LlmJob) and own > 0:
                self.out.llm_mutations += 1
        if own:
            key = f"{parent.name}.{name}"
            self.out.by_field[key] = self.out.by_field.get(key, 0.0) + own * mult
            self.out.total += own * mult
        self.selections(returns, node.selection_set, mult * child, seen)

    def arguments(self, node: FieldNode) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for argument in node.arguments or ():
            value = value_from_ast_untyped(argument.value, self.variables)
            if value is not Undefined:
                args[argument.name.value] = value
        return args
