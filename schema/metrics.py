"""Per-operation metrics: every GraphQL operation is timed and reported with its outcome.

The outcome is ``ok`` or the first error's ``extensions.code`` (a bounded set: the typed family plus
GRAPHQL_VALIDATION_FAILED and INTERNAL_SERVER_ERROR). Listed first among the schema's extensions, so it
sees each operation whole — parse, validation, the guard's refusals, execution — and the errors after
``TypedErrors`` has coded them. Where the numbers go is the context's ``observer`` (``/metrics`` in the
server; none in core tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension


class OperationObserver(Protocol):
    def observe_operation(self, name: str | None, kind: str, outcome: str, seconds: float) -> None: ...


def outcome_of(errors: Sequence[GraphQLError] | None) -> str:
    if not errors:
        return "ok"
    code = (errors[0].extensions or {}).get("code")
    return code if isinstance(code, str) else "INTERNAL_SERVER_ERROR"


class OperationMetrics(SchemaExtension):
    def on_operation(self) -> Iterator[None]:  # type: ignore[override]
        started = time.perf_counter()
        yield
        ec = self.execution_context
        observer: OperationObserver | None = getattr(ec.context, "observer", None)
        if observer is None:
            return
        try:
            kind = ec.operation_type.value
        except Exception:  # no document (a syntax error) or no such operation: the type is unknown
            kind = "unknown"
        result: Any = ec.result
        errors = ec.pre_execution_errors or (getattr(result, "errors", None) if result is not None else None)
        observer.observe_operation(ec.operation_name, kind, outcome_of(errors), time.perf_counter() - started)
