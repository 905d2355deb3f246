"""Document-shape limits: selection depth, alias count, parser tokens (strawberry's own limiters).

The rules are strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter`` validators, built once per
limit value (so the validation cache, keyed by the rule classes, keeps hitting), and tagged so their
errors leave as ``LIMIT_EXCEEDED`` naming the limit instead of a generic validation failure. The token
limit is graphql-core's parser option, which ``MaxTokensLimiter`` sets; its syntax error is tagged by
``RequestGuard.on_parse``.
"""

from __future__ import annotations

import functools
from typing import Any

from graphql import ASTValidationRule, GraphQLError, ValidationContext
from strawberry.extensions.max_aliases import create_validator as alias_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator

TOKEN_LIMIT_MARK = "tokens. Parsing aborted"
"""graphql-core's message when a document passes ``max_tokens``."""


def limit_error(error: GraphQLError, limit: str, allowed: int) -> GraphQLError:
    error.extensions = {**(error.extensions or {}), "code": "LIMIT_EXCEEDED", "limit": limit, "allowed": allowed}
    return error


def _tagged(rule: type[ASTValidationRule], limit: str, allowed: int) -> type[ASTValidationRule]:
    """``rule`` with its errors tagged; strawberry's validators report while constructing."""

    class Tagged(rule):  # type: ignore[valid-type,misc]
        def __init__(self, context: ValidationContext) -> None:
            report = context.report_error

            def tagged_report(error: GraphQLError) -> None:
                report(limit_error(error, limit, allowed))

            context.report_error = tagged_report  # type: ignore[method-assign]
            try:
                super().__init__(context)
            finally:
                context.report_error = report  # type: ignore[method-assign]

    Tagged.__name__ = f"{limit.title().replace('_', '')}Limit"
    return Tagged


@functools.cache
def depth_rule(max_depth: int) -> type[ASTValidationRule]:
    return _tagged(depth_validator(max_depth, None, None), "max_query_depth", max_depth)


@functools.cache
def alias_rule(max_aliases: int) -> type[ASTValidationRule]:
    return _tagged(alias_validator(max_aliases), "max_aliases", max_aliases)


def limit_rules(max_depth: int, max_aliases: int) -> tuple[type[ASTValidationRule], ...]:
    rules: list[Any] = []
    if max_depth > 0:
        rules.append(depth_rule(max_depth))
    if max_aliases > 0:
        rules.append(alias_rule(max_aliases))
    return tuple(rules)
