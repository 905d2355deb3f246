"""The execution fast path (``schema/policy/execution.py``) against graphql-core's own execution: the same
documents over the same values give equal results, errors included (a differential test).

A toy schema holds every shape the fast path takes a shortcut for (lists of Float/Int/String/Boolean,
nested lists, plain data objects, nullable and not) and Hypothesis fills it with values both ordinary and
not (NaN, infinities, ints past 32 bits, booleans where floats belong, None, wrong types), then builds
queries over it (aliases, fragments, __typename).
"""

from __future__ import annotations

import math
from typing import Any

import strawberry
from graphql import GraphQLFloat, GraphQLInt, GraphQLList, GraphQLNonNull
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from neuron_explainer.schema.policy.execution import FastListExecutionContext, fast_list


@strawberry.type
class Leafy:
    floats: list[float]
    ints: list[int]
    strings: list[str]
    bools: list[bool]
    rows: list[list[float]]
    maybe: list[float] | None
    score: float
    count: int
    name: str


@strawberry.type
class Holder:
    leafy: Leafy
    many: list[Leafy]


VALUES: dict[str, Any] = {}


@strawberry.type
class Query:
    @strawberry.field
    def holder(self) -> Holder:
        return VALUES["holder"]  # type: ignore[no-any-return]


FAST = strawberry.Schema(query=Query, execution_context_class=FastListExecutionContext)
PLAIN = strawberry.Schema(query=Query, execution_context_class=StrawberryGraphQLCoreExecutionContext)

odd_floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
odd_ints = st.one_of(st.integers(-(2**40), 2**40), st.booleans(), st.floats(allow_nan=True), st.none())
odd_strings = st.one_of(st.text(max_size=5), st.integers(), st.none())
odd_bools = st.one_of(st.booleans(), st.integers(0, 2), st.none())


def _lists(items: st.SearchStrategy[Any], plain: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    # Mostly well-typed lists (the fast path's case), sometimes one odd value in them.
    return st.one_of(st.lists(plain, max_size=6), st.lists(items, max_size=6))


leafy = st.builds(
    Leafy,
    floats=_lists(odd_floats, st.floats(-1e6, 1e6)),
    ints=_lists(odd_ints, st.integers(-(2**31), 2**31 - 1)),
    strings=_lists(odd_strings, st.text(max_size=5)),
    bools=_lists(odd_bools, st.booleans()),
    rows=st.lists(_lists(odd_floats, st.floats(-10, 10)), max_size=3),
    maybe=st.one_of(st.none(), _lists(odd_floats, st.floats(0, 1))),
    score=st.one_of(st.floats(allow_nan=True), st.integers(-(2**40), 2**40), st.booleans()),
    count=odd_ints,
    name=odd_strings,
)
holder = st.builds(Holder, leafy=leafy, many=st.lists(leafy, max_size=3))
LEAVES = ["floats", "ints", "strings", "bools", "rows", "maybe", "score", "count", "name", "__typename"]
selection = st.lists(st.sampled_from(LEAVES), min_size=1, max_size=6, unique=True)


@st.composite
def documents(draw: st.DrawFn) -> str:
    one, many = draw(selection), draw(selection)
    use_fragment = draw(st.booleans())
    alias = draw(st.booleans())
    many_fields = " ".join(f"a_{f}: {f}" if alias and not f.startswith("__") else f for f in many)
    if use_fragment:
        return f"{{ holder {{ leafy {{ ...L }} many {{ {many_fields} }} }} }} fragment L on Leafy {{ {' '.join(one)} }}"
    return f"{{ holder {{ __typename leafy {{ {' '.join(one)} }} many {{ {many_fields} }} }} }}"


def _shape(result: Any) -> tuple[Any, list[tuple[str, tuple[Any, ...]]]]:
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return result.data, errors


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holder, documents())
def test_fast_path_equals_graphql_core(value: Holder, document: str) -> None:
    VALUES["holder"] = value
    fast, plain = _shape(FAST.execute_sync(document)), _shape(PLAIN.execute_sync(document))
    assert _same(fast[0], plain[0]), (document, fast[0], plain[0])
    assert fast[1] == plain[1], (document, fast[1], plain[1])


def test_the_known_deviations_are_gone() -> None:
    ints = GraphQLList(GraphQLNonNull(GraphQLInt))
    floats = GraphQLList(GraphQLNonNull(GraphQLFloat))
    assert fast_list(ints, [1, 2**31 - 1]) == [1, 2**31 - 1]
    assert fast_list(ints, [2**31]) is None  # graphql-core refuses it: so must we
    assert fast_list(floats, [1.0, True]) is None  # would leave as `true`; graphql-core sends 1.0
    assert fast_list(floats, [1.0, 2]) == [1.0, 2]
    assert fast_list(floats, [1.0, float("nan")]) is None
    assert fast_list(floats, [10**400]) is None
