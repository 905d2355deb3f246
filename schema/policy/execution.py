"""Faster completion of the bulky parts of a response: leaf lists and plain data objects.

graphql-core completes every list item through the generic machinery (about a microsecond each); a
query for 100 nodes' top records holds a quarter of a million floats and strings, so that alone costs
most of a second. Here a list whose items are Float/String/Int/Boolean (or lists of them) and already
of the right Python type is completed in one comprehension. Anything unusual (NaN, a wrong type, None)
falls back to graphql-core's path so errors are exactly what they would have been.

Likewise an object whose selected fields are all plain attributes (no resolver, no arguments, no
directives, no field extensions) — an ``ActivationRecord``, its ``Provenance``, a node-table row and the
node it holds (an interface field: the value's own type picks the concrete one), a list of them — is
completed by one precompiled getter per (type, selection) instead of one ``execute_field`` round per
field (~10 us).
The plan is compiled once per request and selection; it is not used when a schema extension hooks
field resolution (a middleware), since that hook must see every field.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLInt,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLString,
    GraphQLUnionType,
    OperationType,
    print_ast,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

log = logging.getLogger(__name__)
_told = False


_NUMBERS = frozenset({float, int})
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
"""GraphQL's Int is 32-bit: graphql-core refuses anything outside, and so must we."""


def _floats(values: list[Any]) -> list[Any] | None:
    # All in C. Item types must be {float} (ints are converted, as graphql-core sends 1 as 1.0; bool is an
    # int subclass and would leave as ``true``); the sum is finite only when every item is finite (NaN
    # and infinities propagate). An int too large for a float sends us down the careful path.
    types = set(map(type, values))
    if not types <= _NUMBERS:
        return None
    try:
        if int in types:
            values = list(map(float, values))
        total = sum(values, 0.0)
    except OverflowError:
        return None
    if math.isfinite(total):
        return values
    return None


def _ints(values: list[Any]) -> list[Any] | None:
    if not values:
        return values
    if set(map(type, values)) != {int} or min(values) < _INT_MIN or max(values) > _INT_MAX:
        return None
    return values


def _bools(values: list[Any]) -> list[Any] | None:
    return values if all(type(x) is bool for x in values) else None


def _strings(values: list[Any]) -> list[Any] | None:
    try:
        "".join(values)  # C speed; raises TypeError on the first item that is not a str
    except TypeError:
        return None
    return values


_LEAF: dict[Any, Callable[[list[Any]], list[Any] | None]] = {
    GraphQLFloat: _floats,
    GraphQLString: _strings,
    GraphQLInt: _ints,
    GraphQLBoolean: _bools,
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


_Plan = Callable[[Any], dict[str, Any] | None]
_Getter = Callable[[Any], Any]
_FALLBACK = object()


def _leaf_getter(attr: str, gql_type: Any, non_null: bool) -> _Getter | None:
    if isinstance(gql_type, GraphQLScalarType | GraphQLEnumType):
        coerce = gql_type.coerce_output_value if hasattr(gql_type, "coerce_output_value") else gql_type.serialize

        def leaf(obj: Any) -> Any:
            value = getattr(obj, attr)
            if value is None:
                return _FALLBACK if non_null else None
            if gql_type is GraphQLFloat and type(value) is float and math.isfinite(value):
                return value
            if gql_type is GraphQLString and type(value) is str:
                return value
            if gql_type is GraphQLInt and type(value) is int and -(2**31) <= value < 2**31:
                return value
            try:
                return coerce(value)
            except Exception:
                return _FALLBACK

        return leaf
    if isinstance(gql_type, GraphQLList):

        def leaves(obj: Any) -> Any:
            value = getattr(obj, attr)
            if value is None:
                return _FALLBACK if non_null else None
            done = fast_list(gql_type, value)
            return _FALLBACK if done is None else done

        return leaves
    return None


def _tell_off(manager: Any) -> None:
    """Once per process: the fast path is off for every request while an extension hooks resolution."""
    global _told
    if not _told:
        _told = True
        hooks = ", ".join(type(m).__name__ for m in getattr(manager, "middlewares", ()))
        log.warning("execution fast path off: schema extensions hook field resolution (%s)", hooks)


def _constant(value: str) -> _Getter:
    return lambda _obj: value


class CompletedOnce(list):  # type: ignore[type-arg]
    """A list of plain objects that never changes (a memoized node table): completed once per selection,
    the same JSON-ready rows are answered to every later request that selects the same fields."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self.completed: dict[tuple[str, str], list[Any]] = {}


def _selection_text(field_details_list: Any) -> str:
    """What a list field selects, as text (the same for the same selection in any document)."""
    return "|".join(print_ast(d.node) for d in field_details_list)


class FastListExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[tuple[str, int], _Plan | None] = {}
        manager = getattr(self, "middleware_manager", None)
        self._hooked = bool(manager is not None and getattr(manager, "middlewares", None))
        if self._hooked:
            _tell_off(manager)

    def _plan(self, object_type: GraphQLObjectType, field_details_list: Any) -> _Plan | None:
        key = (object_type.name, id(field_details_list))
        if key in self._plans:
            return self._plans[key]
        plan = self._compile(object_type, field_details_list)
        self._plans[key] = plan
        return plan

    def _compile(self, object_type: GraphQLObjectType, field_details_list: Any) -> _Plan | None:
        if self._hooked:
            return None
        collected = self.collect_subfields(object_type, field_details_list)
        if collected.new_defer_usages:
            return None
        getters: list[tuple[str, _Getter]] = []
        for response_key, details in collected.grouped_field_set.items():
            node = details[0].node
            name = node.name.value
            if node.arguments or node.directives:
                return None
            if name == "__typename":
                getters.append((response_key, _constant(object_type.name)))
                continue
            field_def = object_type.fields.get(name)
            definition = field_def.extensions.get("strawberry-definition") if field_def else None
            if (
                definition is None
                or getattr(definition, "base_resolver", None) is not None
                or getattr(definition, "extensions", None)
                or getattr(definition, "permission_classes", None)
            ):
                return None
            attr = definition.python_name
            gql_type = field_def.type  # type: ignore[union-attr]
            non_null = isinstance(gql_type, GraphQLNonNull)
            inner = gql_type.of_type if non_null else gql_type
            getter = _leaf_getter(attr, inner, non_null)
            if getter is None and isinstance(inner, GraphQLObjectType):
                sub_plan = self._plan(inner, details)
                if sub_plan is None:
                    return None

                def nested(obj: Any, a: str = attr, p: _Plan = sub_plan, nn: bool = non_null) -> Any:
                    value = getattr(obj, a)
                    if value is None:
                        return _FALLBACK if nn else None
                    done = p(value)
                    return _FALLBACK if done is None else done

                getter = nested
            if getter is None and isinstance(inner, GraphQLInterfaceType | GraphQLUnionType):
                getter = self._abstract_getter(attr, inner, details, non_null)
            if getter is None:
                return None
            getters.append((response_key, getter))
        is_type_of = object_type.is_type_of

        def plan(obj: Any) -> dict[str, Any] | None:
            if is_type_of is not None and is_type_of(obj, None) is not True:  # type: ignore[arg-type]
                return None
            out: dict[str, Any] = {}
            for key, get in getters:
                value = get(obj)
                if value is _FALLBACK:
                    return None
                out[key] = value
            return out

        return plan

    def _abstract_getter(
        self, attr: str, abstract: GraphQLInterfaceType | GraphQLUnionType, details: Any, non_null: bool
    ) -> _Getter:
        """A field of interface or union type (a node-table row's ``node``): the value's own Strawberry
        type picks the concrete type, whose plan completes it (anything unusual: the generic path)."""

        def resolved(obj: Any) -> Any:
            value = getattr(obj, attr)
            if value is None:
                return _FALLBACK if non_null else None
            definition = getattr(type(value), "__strawberry_definition__", None)
            concrete = self.schema.get_type(definition.name) if definition is not None else None
            if not isinstance(concrete, GraphQLObjectType) or not self.schema.is_sub_type(abstract, concrete):
                return _FALLBACK
            plan = self._plan(concrete, details)
            done = plan(value) if plan is not None else None
            return _FALLBACK if done is None else done

        return resolved

    def _fast_objects(self, list_type: GraphQLList[Any], field_details_list: Any, value: Any) -> list[Any] | None:
        """A list of non-null plain objects (a node table's rows), each completed by its type's plan; a
        ``CompletedOnce`` list keeps what it completed to, per selection, for the next request."""
        item = list_type.of_type
        if not isinstance(value, list) or not isinstance(item, GraphQLNonNull):
            return None
        inner = item.of_type
        if not isinstance(inner, GraphQLObjectType):
            return None
        memo = value.completed if isinstance(value, CompletedOnce) else None
        key = (inner.name, _selection_text(field_details_list)) if memo is not None else None
        if memo is not None and key is not None:
            found = memo.get(key)
            if found is not None:
                return found
        plan = self._plan(inner, field_details_list)
        if plan is None:
            return None
        rows = []
        for row in value:
            done = plan(row)
            if done is None:
                return None
            rows.append(done)
        if memo is not None and key is not None:
            memo[key] = rows
        return rows

    def build_response(self, *args: Any, **kwargs: Any) -> Any:
        """graphql-core keeps bound methods of the execution context on itself (``async_helpers``), so every
        execution is a reference cycle: freed only by a full collection, which walks every live object
        (hundreds of ms under load). Dropping the context value (and our plans) when the response is built
        leaves that cycle small: the request, its loaders and its data are freed at once by refcount."""
        response = super().build_response(*args, **kwargs)
        if self.operation.operation is not OperationType.SUBSCRIPTION:
            self.context_value = None
            self._plans.clear()
        return response

    def complete_object_value(self, return_type, field_details_list, info, path, result, position_context):  # type: ignore[no-untyped-def,override]
        plan = self._plan(return_type, field_details_list)
        if plan is not None:
            done = plan(result)
            if done is not None:
                return done
        return super().complete_object_value(return_type, field_details_list, info, path, result, position_context)

    def complete_list_value(self, return_type, field_details_list, info, path, result, position_context):  # type: ignore[no-untyped-def,override]
        done = fast_list(return_type, result)
        if done is None:
            done = self._fast_objects(return_type, field_details_list, result)
        if done is not None:
            return done
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)
