"""Turning exceptions into GraphQL errors: typed codes for user errors, masked internals with a request id.

``ErrorCode`` is every ``extensions.code`` the server sends, an enum in the SDL, so the generated client
is typed against it. A message never echoes megabytes back: past ``MAX_MESSAGE_CHARS`` it is cut.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from neuron_explainer.errors import NeuronExplainerError

log = logging.getLogger("neuron_explainer.errors")
MAX_MESSAGE_CHARS = 2000


@strawberry.enum(description="Every extensions.code an error (or a failed job) carries.")
class ErrorCode(enum.Enum):
    BAD_USER_INPUT = "BAD_USER_INPUT"
    """The request itself is wrong: malformed id, out-of-range node, bad value, ..."""
    NOT_FOUND = "NOT_FOUND"
    MODEL_NOT_LOADED = "MODEL_NOT_LOADED"
    LLM_NOT_CONFIGURED = "LLM_NOT_CONFIGURED"
    UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    CORRUPT_DATA = "CORRUPT_DATA"
    LLM_BAD_REPLY = "LLM_BAD_REPLY"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    """The document does not parse or does not fit the schema."""
    INTERRUPTED = "INTERRUPTED"
    """A job the server stopped before it ended; asking again resumes it."""
    NOT_READY = "NOT_READY"
    """The server is still starting (HTTP 503 with Retry-After, the phase in extensions); ask again soon."""
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
    """A bug: logged on the server with the request id."""


def short(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return f"{message[: MAX_MESSAGE_CHARS - 60]}... ({len(message) - MAX_MESSAGE_CHARS + 60} characters cut)"


def translate_error(error: GraphQLError, request_id: str) -> GraphQLError:
    original = error.original_error
    if len(error.message) > MAX_MESSAGE_CHARS:
        error.message = short(error.message)
    if original is None:
        # Parse and validation errors: the client's query is wrong. Tagged in place, because strawberry
        # keeps the same error objects in more than one list.
        # A variable's value that does not coerce (an unknown enum member, a 33-bit Int) is the client's
        # input, not its document.
        fallback = "BAD_USER_INPUT" if error.message.startswith("Variable '$") else "GRAPHQL_VALIDATION_FAILED"
        error.extensions = {**(error.extensions or {}), "code": (error.extensions or {}).get("code") or fallback}
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
            short(original.message),
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
