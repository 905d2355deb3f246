"""Caching whole query results that depend only on immutable stored records.

Stored records never change once written, so a query that reads only them (ids, records, stats) can
be answered from memory the second time without touching the store, the decoder or the executor.
Whether a query qualifies is decided from its document alone, against an allow-list of field
coordinates (anything not listed — explanations, live fields, jobs — makes it uncacheable), plus a
per-request flag resolvers clear when a value came from somewhere mutable (a live computation).
Results with errors are never cached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    OperationDefinitionNode,
    OperationType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    visit,
)
from graphql.execution import ExecutionResult
from strawberry.extensions import SchemaExtension

_NODE_TYPES = ("Node", "MlpNeuron", "AttentionHead", "AutoencoderLatent")
_NODE_FIELDS = (
    "id",
    "kind",
    "layer",
    "index",
    "autoencoder",
    "maxActivation",
    "topActivations",
    "randomSample",
    "quantileSamples",
    "stats",
)
IMMUTABLE_FIELDS: frozenset[str] = frozenset(
    {"Query.node", "Query.nodes"}
    | {f"{t}.{f}" for t in _NODE_TYPES for f in _NODE_FIELDS}
    | {
        f"ActivationRecord.{f}"
        for f in ("tokens", "activations", "normalizedActivations", "attentionRows", "provenance")
    }
    | {f"Provenance.{f}" for f in ("source", "dataset", "model", "computedAt")}
    | {f"Stats.{f}" for f in ("mean", "variance", "skewness", "kurtosis", "quantileBoundaries", "provenance")}
    | {f"QuantileSample.{f}" for f in ("lowerBound", "upperBound", "records")}
    | {
        "NodeConnection.edges",
        "NodeConnection.pageInfo",
        "NodeConnection.totalCount",
        "NodeEdge.cursor",
        "NodeEdge.node",
        "PageInfo.hasNextPage",
        "PageInfo.endCursor",
    }
)


class _Checker(Visitor):
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
        if parent is None or f"{parent.name}.{name}" not in IMMUTABLE_FIELDS:
            self.cacheable = False


class ResponseCache:
    """A byte-bounded LRU of finished results, plus a memo of which documents qualify."""

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[bytes, tuple[ExecutionResult, int]] = OrderedDict()
        self._qualifies: dict[str, bool] = {}
        self._seen: set[str] = set()
        self.hits = 0

    def qualifies(self, schema: Any, query: str, document: DocumentNode) -> bool:
        """Only a query seen before is analysed: one-off queries should not pay for the analysis."""
        known = self._qualifies.get(query)
        if known is None and query not in self._seen:
            if len(self._seen) > 4096:
                self._seen.clear()
            self._seen.add(query)
            return False
        if known is None:
            type_info = TypeInfo(schema)
            checker = _Checker(type_info)
            visit(document, TypeInfoVisitor(type_info, checker))
            known = checker.cacheable
            if len(self._qualifies) > 4096:
                self._qualifies.clear()
            self._qualifies[query] = known
        return known

    def get(self, key: bytes) -> ExecutionResult | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return hit[0]

    def put(self, key: bytes, result: ExecutionResult) -> None:
        size = len(orjson.dumps(result.data)) + len(key)
        if size > self.max_bytes // 4:
            return
        self._entries[key] = (result, size)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, old) = self._entries.popitem(last=False)
            self._bytes -= old


class CachedResponses(SchemaExtension):
    def on_execute(self) -> Iterator[None]:  # type: ignore[override]
        ec = self.execution_context
        ctx = ec.context
        cache: ResponseCache | None = getattr(getattr(ctx, "services", None), "response_cache", None)
        document = ec.graphql_document
        key: bytes | None = None
        query = ec.query
        if cache is not None and document is not None and query is not None and cache.qualifies(
            ec.schema._schema, query, document
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
