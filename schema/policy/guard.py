"""The one request pipeline: every GraphQL operation (HTTP, WebSocket, either protocol) passes these
steps in this order before a resolver runs, and a refused operation executes nothing:

1. with ``--require_auth_for_all``, the key (it needs no document, so nothing is parsed for a stranger);
2. parse, from a byte-bounded cache, under the token limit;
3. pick the operation (several need ``operationName``) and measure its shape (``shape.py``: depth,
   aliases, size and field overlap, fragments measured once), refusing in microseconds what would
   expand past a limit;
4. the key for mutations and subscriptions;
5. validation (cached by query text; a large document validates in a worker thread, so the event loop
   keeps serving others);
6. the cost budget (``cost.py``, memoised by query, operation and variables);
7. the LLM rate per caller, the caller's quota of jobs in flight, and (for operations that run the
   live model) room in the live queue, each refusal with a ``retryAfter`` hint.

Its one error says why (``UNAUTHENTICATED``; ``LIMIT_EXCEEDED`` naming ``limit``; the document's own
validation errors). ``RequestPolicy`` holds what is built once from the settings; ``RequestGuard`` is
the schema extension, made fresh per operation, that applies it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import orjson
from graphql import DocumentNode, GraphQLError, OperationDefinitionNode, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.graphql import OperationType

from neuron_explainer.errors import LimitExceeded, NeuronExplainerError
from neuron_explainer.inference.admission import BoundedBackend
from neuron_explainer.schema.policy.auth import ApiKeyCheck, presented_credential
from neuron_explainer.schema.policy.caches import DocumentCaches
from neuron_explainer.schema.policy.cost import CostEstimate, CostEstimator
from neuron_explainer.schema.policy.rate_limit import RateLimiter
from neuron_explainer.schema.policy.shape import OVERLAP_PER_TOKEN, Limits, check_shape, limit_error, pick_operation
from neuron_explainer.settings import ServerSettings

TOKEN_LIMIT_MARK = "tokens. Parsing aborted"
"""graphql-core's message when a document passes ``max_tokens``."""
THREAD_VALIDATION_FIELDS = 2000
"""Documents with more fields than this validate in a worker thread (~10 ms and more)."""
_REFUSED = parse("{ __typename }")
"""What strawberry is handed in place of a refused document: it must not parse or type the real one."""


class RequestPolicy:
    def __init__(self, settings: ServerSettings, graphql_schema: Any, cache_bytes: int | None = None) -> None:
        self.schema = graphql_schema
        self.max_tokens = settings.max_query_tokens
        tokens = self.max_tokens if self.max_tokens > 0 else 1_000_000
        self.limits = Limits(settings.max_query_depth, settings.max_aliases, tokens, tokens * OVERLAP_PER_TOKEN)
        self.budget = settings.max_request_cost
        self.auth = ApiKeyCheck(settings.api_key, settings.require_auth_for_all)
        rate = settings.llm_rate_limit_per_minute
        self.llm_rate = RateLimiter(rate) if rate > 0 else None
        self.jobs_per_caller = settings.max_jobs_per_caller
        self.estimator = CostEstimator(graphql_schema)
        self.caches = DocumentCaches(cache_bytes if cache_bytes is not None else settings.cache_bytes // 8)

    def parse(self, query: str) -> DocumentNode:
        document = self.caches.documents.get(query)
        if document is None:
            try:
                document = parse(query, max_tokens=self.max_tokens if self.max_tokens > 0 else None)
            except GraphQLError as error:
                if TOKEN_LIMIT_MARK in error.message:
                    limit_error(error, "max_query_tokens", self.max_tokens)
                raise
            except RecursionError:
                raise limit_error(
                    GraphQLError("selections nest too deep to parse (max_query_depth)"),
                    "max_query_depth",
                    self.limits.max_depth,
                ) from None
            self.caches.put_document(query, document)
        return document

    def shape(
        self, query: str, name: str | None, document: DocumentNode, operation: OperationDefinitionNode
    ) -> tuple[GraphQLError | None, int]:
        key = (query, name)
        found = self.caches.shapes.get(key)
        if found is None:
            found = check_shape(document, operation, self.limits)
            self.caches.shapes.put(key, found, len(query) + 200)
        result: tuple[GraphQLError | None, int] = found
        return result

    async def validate(self, query: str | None, document: DocumentNode, rules: Any, fields: int) -> list[GraphQLError]:
        if query is not None and (hit := self.caches.validations.get(query)) is not None:
            return list(hit)
        if fields > THREAD_VALIDATION_FIELDS:
            errors = await asyncio.to_thread(validate_document, self.schema, document, rules)
        else:
            errors = validate_document(self.schema, document, rules)
        if query is not None:
            self.caches.put_validation(query, errors)
        return list(errors)

    def estimate(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        query: str | None,
        name: str | None,
        variables: Any,
    ) -> CostEstimate:
        """Memoised by (query text, operation, variables): a repeated request costs one dict lookup."""
        try:
            key = orjson.dumps([query, name, variables]) if query is not None else None
        except TypeError:
            key = None
        if key is not None and (hit := self.caches.estimates.get(key)) is not None:
            estimate: CostEstimate = hit
            return estimate
        estimate = self.estimator.estimate(document, operation, variables)
        if key is not None:
            self.caches.estimates.put(key, estimate, len(key) + 64 * (1 + len(estimate.by_field)))
        return estimate


def _as_graphql(error: NeuronExplainerError) -> GraphQLError:
    return GraphQLError(error.message, original_error=error, extensions=error.extensions())


def client_address(request: Any) -> str:
    client = getattr(request, "client", None)
    return f"addr:{getattr(client, 'host', None) or '-'}"


def _retry_after(wait: float) -> int | None:
    return math.ceil(wait) if math.isfinite(wait) else None


class RequestGuard(SchemaExtension):
    def __init__(self, *, execution_context: Any = None) -> None:
        super().__init__()
        self.refusal: GraphQLError | None = None
        self.operation: OperationDefinitionNode | None = None
        self.fields = 0

    def _policy(self) -> RequestPolicy | None:
        policy = getattr(self.execution_context.context, "policy", None)
        return policy if isinstance(policy, RequestPolicy) else None

    def _credential(self) -> str | None:
        ctx = self.execution_context.context
        return presented_credential(getattr(ctx, "request", None), getattr(ctx, "connection_params", None))

    def _refuse(self, error: GraphQLError) -> None:
        ec = self.execution_context
        self.refusal = error
        ec.graphql_document = _REFUSED
        ec._provided_operation_name = None

    def on_parse(self) -> Iterator[None]:  # type: ignore[override]
        policy = self._policy()
        if policy is None:
            yield
            return
        ec = self.execution_context
        ctx = ec.context
        try:
            if policy.auth.require_for_all:
                ctx.caller = policy.auth.check(OperationType.QUERY, self._credential())
            document = ec.graphql_document or policy.parse(ec.query or "")
            self.operation = pick_operation(document, getattr(ec, "_provided_operation_name", None))
        except NeuronExplainerError as error:
            self._refuse(_as_graphql(error))
        except GraphQLError as error:
            self._refuse(error)
        else:
            ec.graphql_document = document
            shape, self.fields = policy.shape(
                ec.query or "", getattr(ec, "_provided_operation_name", None), document, self.operation
            )
            if shape is not None:
                self._refuse(shape)
        yield

    async def on_validate(self) -> AsyncIterator[None]:  # type: ignore[override]
        await self._check()
        yield

    async def _check(self) -> None:
        """Before ``yield`` in ``on_validate``: strawberry returns the errors set here without executing
        (and skips its own validation, since ``pre_execution_errors`` is set)."""
        policy = self._policy()
        if policy is None:
            return
        ec = self.execution_context
        if self.refusal is not None or self.operation is None or ec.graphql_document is None:
            ec.pre_execution_errors = [self.refusal or GraphQLError("no operation to run")]
            return
        ctx = ec.context
        request = getattr(ctx, "request", None)
        operation = OperationType(self.operation.operation.value)
        try:
            caller = policy.auth.check(operation, self._credential())
        except NeuronExplainerError as error:
            ec.pre_execution_errors = [_as_graphql(error)]
            return
        caller = caller or getattr(ctx, "caller", None) or client_address(request)
        ctx.caller = caller
        errors = await policy.validate(ec.query, ec.graphql_document, ec.validation_rules, self.fields)
        ec.pre_execution_errors = errors
        if errors:
            return
        estimate = policy.estimate(ec.graphql_document, self.operation, ec.query, ec.operation_name, ec.variables)
        refusal = self._over_budget(policy, estimate) or self._over_rate(policy, operation, estimate, caller)
        refusal = refusal or self._over_quota(policy, estimate, caller) or self._live_queue_full(estimate)
        if refusal is not None:
            ec.pre_execution_errors = [_as_graphql(refusal)]

    @staticmethod
    def _over_budget(policy: RequestPolicy, estimate: CostEstimate) -> LimitExceeded | None:
        if policy.budget <= 0 or estimate.total <= policy.budget:
            return None
        return LimitExceeded(
            f"this request would cost about {estimate.total:.0f} units; the budget per request is "
            f"{policy.budget} (ask for fewer nodes, records, shorter prompts or fewer sequences)",
            limit="request_cost",
            estimate=round(estimate.total, 1),
            budget=policy.budget,
            fields=estimate.top(),
        )

    @staticmethod
    def _over_rate(
        policy: RequestPolicy, operation: OperationType, estimate: CostEstimate, caller: str
    ) -> LimitExceeded | None:
        if policy.llm_rate is None or operation is not OperationType.MUTATION or not estimate.llm_mutations:
            return None
        wait = policy.llm_rate.take(caller, estimate.llm_mutations)
        if wait <= 0:
            return None
        retry = _retry_after(wait)
        when = f"retry in {retry} s" if retry is not None else "more at once than a minute allows"
        return LimitExceeded(
            f"too many explain/score requests: {policy.llm_rate.per_minute:g} per minute per caller; {when}",
            limit="llm_rate",
            retryAfter=retry,
            perMinute=policy.llm_rate.per_minute,
        )

    def _live_queue_full(self, estimate: CostEstimate) -> LimitExceeded | None:
        engine = getattr(getattr(self.execution_context.context, "services", None), "engine", None)
        if not estimate.live or not isinstance(engine, BoundedBackend) or not engine.full():
            return None
        return engine.refusal()

    def _over_quota(self, policy: RequestPolicy, estimate: CostEstimate, caller: str) -> LimitExceeded | None:
        if not estimate.jobs or policy.jobs_per_caller <= 0:
            return None
        jobs = getattr(getattr(self.execution_context.context, "services", None), "jobs", None)
        running = jobs.in_flight(caller) if jobs is not None else 0
        if running + estimate.jobs <= policy.jobs_per_caller:
            return None
        return LimitExceeded(
            f"this request starts {estimate.jobs} jobs and {running} of yours are in flight; at most "
            f"{policy.jobs_per_caller} per caller (retry when some have ended)",
            limit="jobs_in_flight",
            allowed=policy.jobs_per_caller,
            inFlight=running,
            retryAfter=5,
        )
