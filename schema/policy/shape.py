"""Document-shape limits (depth, aliases, size) measured in one pass, with spreads bounded.

A fragment is measured once, however often it is spread: its fields, aliases, height and top-level
response keys are memoised and added at each spread. The walk stops as soon as any measure passes its
limit, so a document whose spreads would expand to 2^30 fields is refused after a few thousand steps,
in microseconds. Validation (graphql-core's rules, which do expand spreads) only ever sees documents
that passed here.

- depth: nesting of fields below the root (root fields are 0), introspection fields ignored (as
  strawberry's ``QueryDepthLimiter`` counts);
- aliases: aliased fields, spreads expanded (as ``MaxAliasesLimiter`` counts);
- fields: fields once every spread is expanded; at most the token limit (a document without spreads
  never has more fields than tokens);
- overlap: the sum over selection sets of (fields sharing a response key)^2: what graphql-core's
  "fields can be merged" rule does pairwise, quadratic in the repeats (2,500 repeats cost it 2 s).

Several operations in one document need ``operationName``; a name that matches none is refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
)

from neuron_explainer.errors import BadInput, LimitExceeded

OVERLAP_PER_TOKEN = 10
"""The overlap budget is this many times the token limit (200k pairs: ~60 ms of validation)."""


@dataclass(frozen=True, slots=True)
class Limits:
    max_depth: int
    max_aliases: int
    max_fields: int
    max_overlap: int


@dataclass(slots=True)
class _Measure:
    height: int = 0
    aliases: int = 0
    fields: int = 0
    overlap: int = 0
    """Of nested selection sets only; the set's own keys are squared by whoever merges them."""
    keys: Counter[str] = field(default_factory=Counter)


class _Over(Exception):
    def __init__(self, limit: str, allowed: int) -> None:
        self.limit = limit
        self.allowed = allowed


def pick_operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    """The operation to run; ``BadInput`` when it is ambiguous or missing."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        if len(operations) == 1:
            return operations[0]
        if not operations:
            raise BadInput("the document has no operation to run", argument="query")
        raise BadInput(
            f"the document has {len(operations)} operations: say which one to run with operationName",
            argument="operationName",
        )
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation
    raise BadInput(f"the document has no operation named {name!r}", argument="operationName")


class _Walk:
    def __init__(self, document: DocumentNode, limits: Limits) -> None:
        self.limits = limits
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.memo: dict[str, _Measure] = {}
        self.visiting: set[str] = set()
        self.fields = 0
        self.aliases = 0

    def count(self, fields: int, aliases: int) -> None:
        """Running totals over the whole walk: a spread bomb stops at the limit, not at the end."""
        self.fields += fields
        self.aliases += aliases
        if self.fields > self.limits.max_fields:
            raise _Over("max_query_tokens", self.limits.max_fields)
        if self.limits.max_aliases > 0 and self.aliases > self.limits.max_aliases:
            raise _Over("max_aliases", self.limits.max_aliases)

    def selection_set(self, selection_set: SelectionSetNode, level: int, introspection: bool = False) -> _Measure:
        if not introspection and self.limits.max_depth > 0 and level > self.limits.max_depth:
            raise _Over("max_query_depth", self.limits.max_depth)
        out = _Measure()
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self.count(1, 1 if selection.alias is not None else 0)
                out.fields += 1
                out.aliases += 1 if selection.alias is not None else 0
                out.keys[(selection.alias or selection.name).value] += 1
                if selection.selection_set is not None:
                    inside = introspection or selection.name.value.startswith("__")
                    child = self.selection_set(selection.selection_set, level + 1, inside)
                    self.merge_child(out, child)
                    if not inside:
                        out.height = max(out.height, 1 + child.height)
            elif isinstance(selection, InlineFragmentNode):
                self.merge_inline(out, self.selection_set(selection.selection_set, level, introspection))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragment(selection.name.value, level, introspection)
                if fragment is not None:
                    self.count(fragment.fields, fragment.aliases)
                    self.merge_inline(out, fragment)
        return out

    def merge_child(self, out: _Measure, child: _Measure) -> None:
        out.fields += child.fields
        out.aliases += child.aliases
        out.overlap += child.overlap + sum(c * c for c in child.keys.values())
        if out.overlap > self.limits.max_overlap:
            raise _Over("max_field_overlap", self.limits.max_overlap)

    def merge_inline(self, out: _Measure, part: _Measure) -> None:
        out.fields += part.fields
        out.aliases += part.aliases
        out.height = max(out.height, part.height)
        out.overlap += part.overlap
        out.keys.update(part.keys)
        if out.overlap > self.limits.max_overlap or max(out.keys.values(), default=0) ** 2 > self.limits.max_overlap:
            raise _Over("max_field_overlap", self.limits.max_overlap)

    def fragment(self, name: str, level: int, introspection: bool) -> _Measure | None:
        found = self.memo.get(name)
        if found is not None:
            if not introspection and self.limits.max_depth > 0 and level + found.height > self.limits.max_depth:
                raise _Over("max_query_depth", self.limits.max_depth)
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.visiting:
            return None  # unknown fragments and cycles: validation names them
        self.visiting.add(name)
        fields, aliases = self.fields, self.aliases
        try:
            # Measured at its first spread's level (for the depth check), stored relative to it.
            measured = self.selection_set(definition.selection_set, level, introspection)
        finally:
            self.visiting.discard(name)
        self.fields, self.aliases = fields, aliases  # the caller counts the whole fragment once per spread
        self.memo[name] = measured
        return measured


def check_shape(
    document: DocumentNode, operation: OperationDefinitionNode, limits: Limits
) -> tuple[GraphQLError | None, int]:
    """(``None`` when the operation is within every limit, else the ``LIMIT_EXCEEDED`` error naming it;
    the fields counted, spreads expanded)."""
    walk = _Walk(document, limits)
    try:
        root = walk.selection_set(operation.selection_set, 0)
        overlap = root.overlap + sum(c * c for c in root.keys.values())
        if overlap > limits.max_overlap:
            raise _Over("max_field_overlap", limits.max_overlap)
    except _Over as over:
        what = {
            "max_query_depth": "selections nest deeper than",
            "max_aliases": "the document has more aliases than",
            "max_query_tokens": "with its fragments expanded the document has more fields than",
            "max_field_overlap": "fields repeat the same response key too often: repeats squared exceed",
        }[over.limit]
        error = GraphQLError(f"{what} {over.allowed} ({over.limit})")
        return limit_error(error, over.limit, over.allowed), walk.fields
    return None, walk.fields


def limit_error(error: GraphQLError, limit: str, allowed: int) -> GraphQLError:
    error.extensions = {**(error.extensions or {}), "code": "LIMIT_EXCEEDED", "limit": limit, "allowed": allowed}
    return error


def as_graphql(error: BadInput | LimitExceeded) -> GraphQLError:
    return GraphQLError(error.message, original_error=error, extensions=error.extensions())
