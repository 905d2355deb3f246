"""Turning exceptions into GraphQL errors: typed codes for user errors, masked internals with a request id."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from neuron_explainer.errors import NeuronExplainerError

log = logging.getLogger("neuron_explainer.errors")


def translate_error(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if original is None:
        # Parse and validation errors: the client's query is wrong. Tagged in place, because strawberry
        # keeps the same error objects in more than one list.
        error.extensions = {
            **(error.extensions or {}),
            "code": (error.extensions or {}).get("code") or "GRAPHQL_VALIDATION_FAILED",
        }
        return error
    if isinstance(original, GraphQLError):
        # graphql-core's own coercion errors (e.g. a variable that is no 32-bit Int) wrap the scalar's
        # GraphQLError: the client's input is wrong, nothing broke.
        return GraphQLError(
            error.message,
            nodes=error.nodes,
            path=error.path,
            original_error=original,
            extensions={
                **(original.extensions or {}),
                "code": (original.extensions or {}).get("code") or "BAD_USER_INPUT",
            },
        )
    if isinstance(original, NeuronExplainerError):
        return GraphQLError(
            original.message,
            nodes=error.nodes,
            path=error.path,
            original_error=original,
            extensions=original.extensions(),
        )
    log.error("internal error in request %s at %s", request_id, error.path, exc_info=original)
    return GraphQLError(
        f"Internal server error (request id {request_id})",
        nodes=error.nodes,
        path=error.path,
        original_error=original,
        extensions={"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    )


class TypedErrors(SchemaExtension):
    """Every error leaves with ``extensions.code``; unexpected exceptions are logged and masked."""

    def _request_id(self) -> str:
        ctx = self.execution_context.context
        return getattr(ctx, "request_id", "-")

    def _translate(self) -> None:
        result = self.execution_context.result
        if result is not None and result.errors:
            rid = self._request_id()
            result.errors[:] = [translate_error(e, rid) for e in result.errors]
        pre = self.execution_context.pre_execution_errors
        if pre:
            rid = self._request_id()
            # In place: strawberry's pre-execution result holds this very list.
            pre[:] = [translate_error(e, rid) for e in pre]

    def on_operation(self) -> Iterator[None]:  # type: ignore[override]
        yield
        self._translate()

    def on_stream_result(self, result: Any) -> Iterator[None]:  # type: ignore[override]
        """Subscriptions: each streamed result is translated as it leaves (``on_operation`` only ends
        with the stream). Translating twice is harmless: a typed error maps to itself."""
        if getattr(result, "errors", None):
            rid = self._request_id()
            result.errors = [translate_error(e, rid) for e in result.errors]
        yield
