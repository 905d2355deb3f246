"""The per-request gate between parsing and execution: shape limits, API key, cost budget, LLM rate.

``RequestPolicy`` is built once from the settings (``Services.policy``); ``RequestGuard`` is the schema
extension, made fresh per operation, that applies it. Everything is decided from the document and its
variables before a resolver runs, for queries, mutations and subscriptions alike (over HTTP and
WebSocket): a refused operation executes nothing, and its one error says why, in this order of
precedence: ``UNAUTHENTICATED``; the document's own errors (including ``LIMIT_EXCEEDED`` for depth,
aliases and tokens); ``LIMIT_EXCEEDED`` for cost (with ``estimate`` and ``budget``) and then for the LLM
rate (with ``retryAfter`` seconds). A request refused for cost takes no rate tokens.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.graphql import OperationType

from neuron_explainer.errors import LimitExceeded, NeuronExplainerError
from neuron_explainer.settings import ServerSettings
from resolvers.rate_limit import RateLimiter
from schema.auth import ApiKeyCheck, presented_credential
from schema.cost import CostEstimate, CostEstimator
from schema.limits import TOKEN_LIMIT_MARK, limit_error, limit_rules


class RequestPolicy:
    def __init__(self, settings: ServerSettings, graphql_schema: Any) -> None:
        self.max_tokens = settings.max_query_tokens
        self.rules = limit_rules(settings.max_query_depth, settings.max_aliases)
        self.budget = settings.max_request_cost
        self.auth = ApiKeyCheck(settings.api_key, settings.require_auth_for_all)
        rate = settings.llm_rate_limit_per_minute
        self.llm_rate = RateLimiter(rate) if rate > 0 else None
        self.estimator = CostEstimator(graphql_schema)
        self._estimates: OrderedDict[bytes, CostEstimate] = OrderedDict()

    def estimate(self, document: Any, query: str | None, operation: str | None, variables: Any) -> CostEstimate:
        """Memoised by (query text, operation, variables): a repeated request costs one dict lookup."""
        try:
            key = orjson.dumps([query, operation, variables]) if query is not None else None
        except TypeError:
            key = None
        if key is not None and (hit := self._estimates.get(key)) is not None:
            self._estimates.move_to_end(key)
            return hit
        estimate = self.estimator.estimate(document, operation, variables)
        if key is not None:
            self._estimates[key] = estimate
            if len(self._estimates) > 2048:
                self._estimates.popitem(last=False)
        return estimate


def _as_graphql(error: NeuronExplainerError) -> GraphQLError:
    return GraphQLError(error.message, original_error=error, extensions=error.extensions())


def _client_address(request: Any) -> str:
    client = getattr(request, "client", None)
    return f"addr:{getattr(client, 'host', None) or '-'}"


class RequestGuard(SchemaExtension):
    def _policy(self) -> RequestPolicy | None:
        services = getattr(self.execution_context.context, "services", None)
        policy = getattr(services, "policy", None)
        return policy if isinstance(policy, RequestPolicy) else None

    def on_operation(self) -> Iterator[None]:  # type: ignore[override]
        policy = self._policy()
        if policy is not None:
            ec = self.execution_context
            if policy.max_tokens > 0:
                ec.parse_options["max_tokens"] = policy.max_tokens
            ec.validation_rules = ec.validation_rules + policy.rules
        try:
            yield
        except GraphQLError as error:  # the parser cache parses in its hook: its errors come through here
            self._tag_token_limit([error])
            raise
        self._tag_token_limit(self.execution_context.pre_execution_errors or [])

    def _tag_token_limit(self, errors: list[GraphQLError]) -> None:
        policy = self._policy()
        for error in errors:
            if policy is not None and TOKEN_LIMIT_MARK in error.message:
                limit_error(error, "max_query_tokens", policy.max_tokens)

    def on_validate(self) -> Iterator[None]:  # type: ignore[override]
        self._check()
        yield

    def _check(self) -> None:
        """Before ``yield`` in ``on_validate``: strawberry returns the errors set here without executing
        (errors set after it are too late). Listed after ``ValidationCache``, whose hook has validated."""
        policy = self._policy()
        if policy is None:
            return
        ec = self.execution_context
        if ec.pre_execution_errors is None and ec.graphql_document is not None:
            ec.pre_execution_errors = validate_document(ec.schema._schema, ec.graphql_document, ec.validation_rules)
        try:
            operation = ec.operation_type
        except RuntimeError:
            return  # no such operation: strawberry reports it
        ctx = ec.context
        request = getattr(ctx, "request", None)
        try:
            caller = policy.auth.check(
                operation, presented_credential(request, getattr(ctx, "connection_params", None))
            )
        except NeuronExplainerError as error:
            ec.pre_execution_errors = [_as_graphql(error)]
            return
        if ec.pre_execution_errors:
            return
        estimate = policy.estimate(ec.graphql_document, ec.query, ec.operation_name, ec.variables)
        if policy.budget > 0 and estimate.total > policy.budget:
            ec.pre_execution_errors = [
                _as_graphql(
                    LimitExceeded(
                        f"this request would cost about {estimate.total:.0f} units; the budget per request is "
                        f"{policy.budget} (ask for fewer nodes, records, shorter prompts or fewer sequences)",
                        limit="request_cost",
                        estimate=round(estimate.total, 1),
                        budget=policy.budget,
                        fields=estimate.top(),
                    )
                )
            ]
            return
        if policy.llm_rate is not None and operation is OperationType.MUTATION and estimate.llm_mutations:
            who = caller or _client_address(request)
            wait = policy.llm_rate.take(who, estimate.llm_mutations)
            if wait > 0:
                retry = math.ceil(wait) if math.isfinite(wait) else None
                when = f"retry in {retry} s" if retry is not None else "more at once than a minute allows"
                ec.pre_execution_errors = [
                    _as_graphql(
                        LimitExceeded(
                            f"too many explain/score requests: {policy.llm_rate.per_minute:g} per minute per "
                            f"caller; {when}",
                            limit="llm_rate",
                            retryAfter=retry,
                            perMinute=policy.llm_rate.per_minute,
                        )
                    )
                ]
