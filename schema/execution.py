"""A faster completion of lists of leaf values (activations, tokens, attention rows).

graphql-core completes every list item through the generic machinery (about a microsecond each); a
query for 100 nodes' top records holds a quarter of a million floats and strings, so that alone costs
most of a second. Here a list whose items are Float/String/Int/Boolean (or lists of them) and already
of the right Python type is completed in one comprehension. Anything unusual (NaN, a wrong type, None)
falls back to graphql-core's path so errors are exactly what they would have been.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLString,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


def _floats(values: list[Any]) -> list[float] | None:
    for x in values:
        t = type(x)
        if not (t is float or t is int) or (t is float and not math.isfinite(x)):
            return None
    return [float(x) for x in values]


def _exact(kind: type) -> Callable[[list[Any]], list[Any] | None]:
    def complete(values: list[Any]) -> list[Any] | None:
        return list(values) if all(type(x) is kind for x in values) else None

    return complete


_LEAF: dict[Any, Callable[[list[Any]], list[Any] | None]] = {
    GraphQLFloat: _floats,
    GraphQLString: _exact(str),
    GraphQLInt: _exact(int),
    GraphQLBoolean: _exact(bool),
}


def fast_list(list_type: GraphQLList[Any], value: Any) -> list[Any] | None:
    """The completed list, or None when the generic path must handle it."""
    if not isinstance(value, list):
        return None
    item = list_type.of_type
    if not isinstance(item, GraphQLNonNull):
        return None  # nullable items may legitimately be None: leave them to graphql-core
    inner = item.of_type
    leaf = _LEAF.get(inner)
    if leaf is not None:
        return leaf(value)
    if isinstance(inner, GraphQLList):
        rows = []
        for row in value:
            done = fast_list(inner, row)
            if done is None:
                return None
            rows.append(done)
        return rows
    return None


class FastListExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def complete_list_value(self, return_type, field_details_list, info, path, result, position_context):  # type: ignore[no-untyped-def,override]
        done = fast_list(return_type, result)
        if done is not None:
            return done
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)
