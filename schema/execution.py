"""Faster completion of the bulky parts of a response: leaf lists and plain data objects.

graphql-core completes every list item through the generic machinery (about a microsecond each); a
query for 100 nodes' top records holds a quarter of a million floats and strings, so that alone costs
most of a second. Here a list whose items are Float/String/Int/Boolean (or lists of them) and already
of the right Python type is completed in one comprehension. Anything unusual (NaN, a wrong type, None)
falls back to graphql-core's path so errors are exactly what they would have been.

Likewise an object whose selected fields are all plain attributes (no resolver, no arguments, no
directives, no field extensions) — an ``ActivationRecord``, its ``Provenance`` — is completed by one
precompiled getter per (type, selection) instead of one ``execute_field`` round per field (~10 us).
The plan is compiled once per request and selection; it is not used when a schema extension hooks
field resolution (a middleware), since that hook must see every field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLFloat,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLString,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext


def _floats(values: list[Any]) -> list[Any] | None:
    # sum() runs in C: it fails on anything that is not a number, its result is a Python float only
    # when every item is a Python int or float, and it is finite only when every item is finite
    # (NaN and infinities propagate). A finite-sum overflow merely sends us down the careful path.
    try:
        total = sum(values, 0.0)
    except TypeError:
        return None
    if type(total) is float and math.isfinite(total):
        return values
    return None


def _exact(kind: type) -> Callable[[list[Any]], list[Any] | None]:
    def complete(values: list[Any]) -> list[Any] | None:
        return values if all(type(x) is kind for x in values) else None

    return complete


def _strings(values: list[Any]) -> list[Any] | None:
    try:
        "".join(values)  # C speed; raises TypeError on the first item that is not a str
    except TypeError:
        return None
    return values


_LEAF: dict[Any, Callable[[list[Any]], list[Any] | None]] = {
    GraphQLFloat: _floats,
    GraphQLString: _strings,
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


def _constant(value: str) -> _Getter:
    return lambda _obj: value


class FastListExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plans: dict[tuple[str, int], _Plan | None] = {}
        manager = getattr(self, "middleware_manager", None)
        self._hooked = bool(manager is not None and getattr(manager, "middlewares", None))

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

    def complete_object_value(self, return_type, field_details_list, info, path, result, position_context):  # type: ignore[no-untyped-def,override]
        plan = self._plan(return_type, field_details_list)
        if plan is not None:
            done = plan(result)
            if done is not None:
                return done
        return super().complete_object_value(return_type, field_details_list, info, path, result, position_context)

    def complete_list_value(self, return_type, field_details_list, info, path, result, position_context):  # type: ignore[no-untyped-def,override]
        done = fast_list(return_type, result)
        if done is not None:
            return done
        return super().complete_list_value(return_type, field_details_list, info, path, result, position_context)
