"""The request policy as declared on the schema: every field has a ``@policy``, the SDL shows it, and the
pipeline's pieces (shape, cost, caches) behave as documented, in-process (no server needed)."""

from __future__ import annotations

import time

import pytest
from graphql import GraphQLInterfaceType, GraphQLObjectType, parse

from neuron_explainer.errors import BadInput
from neuron_explainer.schema import schema
from neuron_explainer.schema.policy import policy_of
from neuron_explainer.schema.policy.caches import DocumentCaches
from neuron_explainer.schema.policy.cost import CostEstimator
from neuron_explainer.schema.policy.shape import OVERLAP_PER_TOKEN, Limits, check_shape, pick_operation

GRAPHQL = schema._schema
LIMITS = Limits(12, 200, 20000, 20000 * OVERLAP_PER_TOKEN)


def _types() -> list[GraphQLObjectType | GraphQLInterfaceType]:
    return [
        t
        for name, t in sorted(GRAPHQL.type_map.items())
        if not name.startswith("__") and isinstance(t, GraphQLObjectType | GraphQLInterfaceType)
    ]


def test_every_field_declares_its_policy() -> None:
    missing = [f"{t.name}.{name}" for t in _types() for name in t.fields if policy_of(t, name) is None]
    assert not missing, (
        f"{len(missing)} fields have no @policy: {', '.join(missing)}. Give each a price where it is defined: "
        "strawberry.field(directives=[plain()]) (or fixed(n), records(arg, default), per_item(arg, default), "
        "live_prompt(arg), explain_job(), score_job() from neuron_explainer.schema.policy; cacheable=True only "
        "when the value depends on immutable stored records alone), or a default for all of a type's fields "
        "with @strawberry.type(directives=[plain()]); then re-export schema/schema.graphql."
    )


def test_the_exported_sdl_shows_prices_next_to_fields() -> None:
    sdl = schema.as_str()
    assert (
        "topActivations(first: Int = 20, source: DataSource! = AUTO): [ActivationRecord!]! @policy(price: RECORDS"
        in sdl
    )
    assert "directive @policy(" in sdl and "enum ErrorCode" in sdl and "enum ScoreMethod" in sdl
    assert "CORRUPT_DATA" in sdl and "CORRUPT_BLOB" not in sdl


def _estimate(query: str, variables: dict[str, object] | None = None) -> float:
    document = parse(query)
    return CostEstimator(GRAPHQL).estimate(document, pick_operation(document, None), variables).total


def test_prices_multiply_down_the_tree_and_fragments_cost_what_they_expand_to() -> None:
    wide = (
        '{ nodes(model: "tiny-gpt2", kind: "mlp_neuron", layer: 0, first: 40) '
        "{ edges { node { topActivations(first: 20) { tokens } } } } }"
    )
    assert _estimate(wide) == 40 * 20 + 40 + 1
    spread = (
        'query { nodes(model: "m", kind: "mlp_neuron", layer: 0, first: 40) { edges { node { ...R ...R } } } } '
        "fragment R on Node { topActivations(first: 20) { tokens } }"
    )
    assert _estimate(spread) == 2 * 40 * 20 + 40 + 1
    assert _estimate("{ __schema { types { name } } }") == 1000
    assert _estimate('{ a: __schema { types { name } } b: __type(name: "Node") { name } }') == 1020
    free_job = 'mutation { scoreExplanation(input: {nodeId: "x", explanation: "e", method: TOKEN_LOOKUP}) { id } }'
    assert _estimate(free_job) == 10 + 20  # a job, and 20 default sequences at 1 unit each


def test_a_spread_bomb_is_measured_in_microseconds() -> None:
    parts = ["fragment F0 on Query { __typename }"]
    parts += [f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, 60)]
    document = parse("query { ...F59 } " + " ".join(parts))
    start = time.perf_counter()
    error, _ = check_shape(document, pick_operation(document, None), LIMITS)
    assert time.perf_counter() - start < 0.05
    assert error is not None and error.extensions["limit"] in ("max_query_tokens", "max_field_overlap")
    # Pricing the same document is linear too (fragments priced once per type).
    start = time.perf_counter()
    CostEstimator(GRAPHQL).estimate(document, pick_operation(document, None), None)
    assert time.perf_counter() - start < 0.05


@pytest.mark.parametrize(
    ("query", "limit"),
    [
        ("{ " + " ".join(f"a{i}: __typename" for i in range(201)) + " }", "max_aliases"),
        ("{ " + "modelInfo { modelName } " * 500 + "}", "max_field_overlap"),
        ("query { ...A } fragment A on Query { " + "a { " * 13 + "z" + " }" * 13 + " }", "max_query_depth"),
        ("query { ...A ...A } fragment A on Query { " + "a { " * 12 + "z" + " }" * 12 + " }", None),
    ],
)
def test_shape_limits(query: str, limit: str | None) -> None:
    document = parse(query)
    error, _ = check_shape(document, pick_operation(document, None), LIMITS)
    assert (error.extensions["limit"] if error is not None else None) == limit


def test_several_operations_need_a_name() -> None:
    document = parse("query A { __typename } query B { __typename }")
    with pytest.raises(BadInput, match="operationName"):
        pick_operation(document, None)
    assert pick_operation(document, "B").name.value == "B"  # type: ignore[union-attr]
    with pytest.raises(BadInput, match="no operation named"):
        pick_operation(document, "C")


def test_document_caches_are_bounded_in_bytes() -> None:
    caches = DocumentCaches(8 * 1024 * 1024)
    for i in range(200):
        query = '{ node(id: "%s") { id } }' % (str(i) + "x" * 100_000)
        caches.put_document(query, parse(query))
        caches.put_validation(query, [])
    assert caches.documents.bytes_used <= caches.documents.max_bytes
    assert caches.validations.bytes_used <= caches.validations.max_bytes
    assert len(caches.documents) < 10


async def test_error_messages_never_echo_megabytes_back() -> None:
    """graphql-core quotes a bad variable's value in its message: a 600 KB string must not come back whole."""
    huge = "x" * 600_000
    result = await schema.execute("query($n: Int!) { __typename @include(if: true) } ", variable_values={"n": huge})
    from neuron_explainer.schema.policy.errors import MAX_MESSAGE_CHARS

    assert result.errors and all(len(e.message) <= MAX_MESSAGE_CHARS for e in result.errors), [
        len(e.message) for e in result.errors or []
    ]
    assert result.errors[0].extensions["code"] == "BAD_USER_INPUT"
