"""The request pipeline's caches, every one a ``ByteLRU`` bounded in bytes (never in entries).

- parsed documents, keyed by query text (parsing a 100-node query costs ~10 ms);
- validation results, keyed by query text (validation costs more than parsing);
- cost estimates, keyed by (query, operation, variables);
- whole responses of queries over immutable stored data (``ResponseCache``).

A 20 MB query text can no more grow the server than the body limit lets it in, and the caches share
``--cache_mb`` with the record cache. Sizes are estimates: a parsed document holds ~10 bytes of
Python objects per byte of query text; a decoded response ~3 bytes per byte of its JSON.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)
from graphql.execution import ExecutionResult
from strawberry.extensions import SchemaExtension

from neuron_explainer.schema.policy.declare import policy_of
from neuron_explainer.storage.cache import ByteLRU

DOCUMENT_BYTES_PER_CHAR = 10
RESULT_BYTES_PER_JSON_BYTE = 3
ENTRY_OVERHEAD = 200


class DocumentCaches:
    """Parsed documents and their validation errors, by query text; ``max_bytes`` for both together."""

    def __init__(self, max_bytes: int) -> None:
        self.documents: ByteLRU[str, DocumentNode] = ByteLRU(max_bytes // 2)
        self.validations: ByteLRU[str, list[GraphQLError]] = ByteLRU(max_bytes // 4)
        self.estimates: ByteLRU[bytes, Any] = ByteLRU(max_bytes // 8)
        self.shapes: ByteLRU[tuple[str, str | None], Any] = ByteLRU(max_bytes // 8)
        """(query, operation name) -> (shape error or None, fields): a document's shape never changes."""

    def document_size(self, query: str) -> int:
        return len(query) * DOCUMENT_BYTES_PER_CHAR + ENTRY_OVERHEAD

    def put_document(self, query: str, document: DocumentNode) -> None:
        self.documents.put(query, document, self.document_size(query))

    def put_validation(self, query: str, errors: list[GraphQLError]) -> None:
        self.validations.put(query, errors, len(query) + ENTRY_OVERHEAD + sum(len(e.message) for e in errors))


class _Checker(Visitor):
    """Whether every field of a query document is declared ``cacheable`` (``@policy``)."""

    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.cacheable = True

    def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
        if node.operation is not OperationType.QUERY:
            self.cacheable = False

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        parent = self.type_info.get_parent_type()
        name = node.name.value
        if name == "__typename":
            return
        policy = policy_of(parent, name) if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else None
        if policy is None or not policy.cacheable:
            self.cacheable = False


class ResponseCache:
    """A byte-bounded LRU of finished results, plus a memo of which documents qualify."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.results: ByteLRU[bytes, ExecutionResult] = ByteLRU(max_bytes)
        self._qualifies: ByteLRU[str, bool] = ByteLRU(max(max_bytes // 16, 1 << 20))
        self._seen: ByteLRU[str, bool] = ByteLRU(max(max_bytes // 16, 1 << 20))

    @property
    def hits(self) -> int:
        return self.results.hits

    def qualifies(self, schema: Any, query: str, document: DocumentNode) -> bool:
        """Only a query seen before is analysed: one-off queries should not pay for the analysis."""
        known = self._qualifies.get(query)
        if known is not None:
            return known
        if self._seen.get(query) is None:
            self._seen.put(query, True, len(query) + ENTRY_OVERHEAD)
            return False
        type_info = TypeInfo(schema)
        checker = _Checker(type_info)
        visit(document, TypeInfoVisitor(type_info, checker))
        self._qualifies.put(query, checker.cacheable, len(query) + ENTRY_OVERHEAD)
        return checker.cacheable

    def get(self, key: bytes) -> ExecutionResult | None:
        return self.results.get(key)

    def put(self, key: bytes, result: ExecutionResult) -> None:
        size = len(orjson.dumps(result.data)) * RESULT_BYTES_PER_JSON_BYTE + len(key) + ENTRY_OVERHEAD
        if size <= self.results.max_bytes // 4:
            self.results.put(key, result, size)


class CachedResponses(SchemaExtension):
    def on_execute(self) -> Iterator[None]:  # type: ignore[override]
        ec = self.execution_context
        ctx = ec.context
        cache = getattr(ctx, "responses", None)
        cache = cache if isinstance(cache, ResponseCache) else None
        document = ec.graphql_document
        key: bytes | None = None
        query = ec.query
        if (
            cache is not None
            and document is not None
            and query is not None
            and cache.qualifies(ec.schema._schema, query, document)
        ):
            try:
                key = orjson.dumps([query, ec.operation_name, ec.variables], option=orjson.OPT_SORT_KEYS)
            except TypeError:  # e.g. an integer beyond 64 bits: not cached, and coercion will refuse it
                key = None
            hit = cache.get(key) if key is not None else None
            if hit is not None:
                ec.result = hit
                key = None
        yield
        result = ec.result
        if (
            key is not None
            and cache is not None
            and isinstance(result, ExecutionResult)
            and not result.errors
            and getattr(ctx, "cacheable", True)
        ):
            cache.put(key, result)
