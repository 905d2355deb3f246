"""A field's request policy, declared where the field is: its price and whether it is cacheable.

``@policy`` is a schema directive, so the exported SDL shows every field's price next to the field
(``topActivations(...): [ActivationRecord!]! @policy(price: RECORDS, arg: "first", default: 20,
cacheable: true)``). On a type or interface it is the default for the fields that declare none.
Prices (units: stored record read = 1, live prompt token x node = 1, LLM call = 100):

- ``PLAIN``: no work beyond the value: 1 when the field returns an object, 0 for a scalar;
- ``FIXED``: ``units`` per field, its selection paid once;
- ``RECORDS``: a list of records, ``arg`` (or ``default``) of them, their own fields free (x10 with
  ``source: LIVE``, computed over the reference corpus);
- ``PER_ITEM``: a list of objects: ``1``, and its selection paid ``arg`` (or ``default``) times (``arg``
  may name alternatives, ``"first|last"``: the largest given counts);
- ``LIVE_PROMPT``: a forward pass over the prompt: its tokens, and its selection paid once per token;
- ``EXPLAIN_JOB`` / ``SCORE_JOB``: a job (priced in ``cost.py`` by its method and sequences; a job that
  calls no LLM still costs), counted against the caller's jobs in flight.

``cacheable``: the value depends only on immutable stored records, so a whole response made of such
fields may be served from the response cache. Build them with the helpers below, e.g.
``strawberry.field(directives=[records("first", 20, cacheable=True)])``.
"""

from __future__ import annotations

import enum

import strawberry
from graphql import GraphQLField, GraphQLInterfaceType, GraphQLObjectType
from strawberry.schema_directive import Location


@strawberry.enum(description="How a field is priced by the request-cost budget (see the @policy directive).")
class Price(enum.Enum):
    PLAIN = "plain"
    """1 when the field returns an object, 0 for a scalar."""
    FIXED = "fixed"
    """``units`` per field."""
    RECORDS = "records"
    """``arg`` (or ``default``) stored records; x10 with ``source: LIVE``."""
    PER_ITEM = "per_item"
    """1, and the selection paid ``arg`` (or ``default``) times."""
    LIVE_PROMPT = "live_prompt"
    """The prompt's tokens, and the selection paid once per token."""
    EXPLAIN_JOB = "explain_job"
    """An explain job (and its scoring, if asked)."""
    SCORE_JOB = "score_job"
    """A scoring job."""


@strawberry.schema_directive(
    locations=[Location.FIELD_DEFINITION, Location.OBJECT, Location.INTERFACE],
    name="policy",
    description="What a field costs against the per-request budget and whether its value may be cached.",
)
class Policy:
    price: Price = Price.PLAIN
    units: float = 0.0
    arg: str | None = None
    default: int = 0
    cacheable: bool = False


def plain(*, cacheable: bool = False) -> Policy:
    return Policy(price=Price.PLAIN, cacheable=cacheable)


def fixed(units: float, *, cacheable: bool = False) -> Policy:
    return Policy(price=Price.FIXED, units=units, cacheable=cacheable)


def records(arg: str | None, default: int, *, cacheable: bool = False) -> Policy:
    return Policy(price=Price.RECORDS, arg=arg, default=default, cacheable=cacheable)


def per_item(arg: str, default: int, *, cacheable: bool = False) -> Policy:
    return Policy(price=Price.PER_ITEM, arg=arg, default=default, cacheable=cacheable)


def live_prompt(arg: str) -> Policy:
    return Policy(price=Price.LIVE_PROMPT, arg=arg)


def explain_job() -> Policy:
    return Policy(price=Price.EXPLAIN_JOB)


def score_job() -> Policy:
    return Policy(price=Price.SCORE_JOB)


def _declared(directives: object) -> Policy | None:
    for directive in directives or ():  # type: ignore[attr-defined]
        if isinstance(directive, Policy):
            return directive
    return None


def own_policy(field: GraphQLField) -> Policy | None:
    definition = field.extensions.get("strawberry-definition")
    return _declared(getattr(definition, "directives", None))


def type_policy(parent: GraphQLObjectType | GraphQLInterfaceType) -> Policy | None:
    """The type's own default, else that of the first interface declaring one."""
    for graphql_type in (parent, *parent.interfaces):
        definition = graphql_type.extensions.get("strawberry-definition")
        found = _declared(getattr(definition, "directives", None))
        if found is not None:
            return found
    return None


def policy_of(parent: GraphQLObjectType | GraphQLInterfaceType, name: str) -> Policy | None:
    """``parent.name``'s declared policy: the field's own, else its interfaces' field's, else the type's."""
    field = parent.fields.get(name)
    if field is None:
        return None
    found = own_policy(field)
    for interface in parent.interfaces:
        if found is not None:
            break
        inherited = interface.fields.get(name)
        found = own_policy(inherited) if inherited is not None else None
    return found or type_policy(parent)
