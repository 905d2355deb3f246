"""``GET /metrics``: the server's counters in the Prometheus text format (``prometheus-client``).

Two kinds of metric. Per-request ones are observed as requests finish: GraphQL operations by operation
name, type and outcome (``ok`` or the first error's ``extensions.code``), HTTP requests by route and
status. Everything else is read from the services when Prometheus scrapes, so the core keeps plain
counters and never imports prometheus: the engine's forwards, batch sizes and queue depth, jobs by
status, cache hits and misses, readiness. Each app has its own registry (never the global one), so
several servers in one process, as in tests, do not collide.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from neuron_explainer.activation_server.services import ServerState
from neuron_explainer.resolvers.context import Services

disable_created_metrics()  # a `_created` twin of every counter doubles the output for a number nobody graphs
PREFIX = "neuron_explainer"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_OPERATION_NAMES = 200
"""Distinct operation names kept as labels; later ones count as ``other`` (clients choose the names)."""
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """The registry of one server: request metrics it observes, and a collector over its services."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("operation", "type", "outcome")
        self.operations = Counter(
            f"{PREFIX}_graphql_operations", "GraphQL operations answered", labels, registry=self.registry
        )
        self.operation_seconds = Histogram(
            f"{PREFIX}_graphql_operation_duration_seconds",
            "GraphQL operation latency (subscriptions: until the stream ends)",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.http = Counter(
            f"{PREFIX}_http_requests", "HTTP requests and WebSocket connections", ("route", "method", "status"),
            registry=self.registry,
        )  # fmt: skip
        self.http_seconds = Histogram(
            f"{PREFIX}_http_request_duration_seconds",
            "HTTP request latency by route",
            ("route", "method"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._names: set[str] = set()
        self._state: Callable[[], ServerState | None] = lambda: None
        self._ready: Callable[[], bool] = lambda: False
        self.registry.register(_ServicesCollector(self))

    def watch(self, state: Callable[[], ServerState | None], ready: Callable[[], bool]) -> None:
        """Where scrape-time metrics read from (the services exist only once start-up has built them)."""
        self._state, self._ready = state, ready

    def observe_operation(self, name: str | None, kind: str, outcome: str, seconds: float) -> None:
        """One GraphQL operation; ``name`` as the client sent it (bounded here before it becomes a label)."""
        label = self._operation_label(name)
        self.operations.labels(label, kind, outcome).inc()
        self.operation_seconds.labels(label, kind, outcome).observe(seconds)

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http.labels(route, method, str(status)).inc()
        self.http_seconds.labels(route, method).observe(seconds)

    def _operation_label(self, name: str | None) -> str:
        if not name:
            return "anonymous"
        if not _NAME.match(name):
            return "invalid"
        if name not in self._names:
            if len(self._names) >= MAX_OPERATION_NAMES:
                return "other"
            self._names.add(name)
        return name

    async def endpoint(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _ServicesCollector(Collector):
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # scrape-time families vary with what runs; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily(f"{PREFIX}_ready", "1 once the model and the store are ready")
        ready.add_metric([], 1.0 if self.metrics._ready() else 0.0)
        yield ready
        state = self.metrics._state()
        if state is None:
            return
        yield from _engine_metrics(state.services)
        yield from _job_metrics(state.services)
        yield from _cache_metrics(state)


def _engine_metrics(services: Services) -> Iterator[Metric]:
    engine = services.engine
    if engine is None:
        return
    forwards = CounterMetricFamily(f"{PREFIX}_engine_forwards", "Forward passes run (an OOM retry counts each)")
    forwards.add_metric([], engine.forward_count)
    yield forwards
    ooms = CounterMetricFamily(f"{PREFIX}_engine_oom", "Forward passes that ran out of GPU memory")
    ooms.add_metric([], engine.oom_count)
    yield ooms
    bounded = engine if hasattr(engine, "refused") else None  # the live queue in front of the engine
    if bounded is not None:
        live = GaugeMetricFamily(f"{PREFIX}_live_queue", "Live requests waiting or running (bounded)")
        live.add_metric([], float(getattr(bounded, "queued", 0)))
        yield live
        refused = CounterMetricFamily(f"{PREFIX}_live_refused", "Live requests refused because the queue was full")
        refused.add_metric([], float(getattr(bounded, "refused", 0)))
        yield refused
    inner = getattr(engine, "backend", engine)  # batching is the engine's own, behind any wrapper
    depth = getattr(inner, "queue_depth", None)
    if depth is not None:
        queue = GaugeMetricFamily(f"{PREFIX}_engine_queue_depth", "Requests waiting for a forward pass")
        queue.add_metric([], float(depth))
        yield queue
    sizes: dict[int, int] | None = getattr(inner, "batch_sizes", None)
    if sizes is not None:
        snapshot = dict(sizes)
        buckets: list[tuple[str, float]] = []
        for bound in (*BATCH_BUCKETS, float("inf")):
            count = sum(n for size, n in snapshot.items() if size <= bound)
            buckets.append(("+Inf" if bound == float("inf") else str(bound), float(count)))
        histogram = HistogramMetricFamily(
            f"{PREFIX}_engine_batch_size",
            "Requests per forward pass (distinct requests sharing one padded batch)",
            buckets=buckets,
            sum_value=float(sum(size * n for size, n in snapshot.items())),
        )
        yield histogram


def _job_metrics(services: Services) -> Iterator[Metric]:
    if services.jobs is None:
        return
    from neuron_explainer.jobs import JobStatus

    counts = services.jobs.status_counts()
    jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Explain and score jobs this server knows, by status", labels=["status"])
    for status in JobStatus:
        jobs.add_metric([status.name.lower()], float(counts.get(status, 0)))
    yield jobs


def _cache_metrics(state: ServerState) -> Iterator[Metric]:
    hits = CounterMetricFamily(f"{PREFIX}_cache_hits", "Cache lookups that found their value", labels=["cache"])
    misses = CounterMetricFamily(f"{PREFIX}_cache_misses", "Cache lookups that did not", labels=["cache"])
    used = GaugeMetricFamily(f"{PREFIX}_cache_bytes", "Bytes held", labels=["cache"])
    reader = state.services.reader
    for name, cache in (
        ("records", reader.records),
        ("explanations", reader.explanations),
        ("responses", state.responses.results),
    ):
        hits.add_metric([name], cache.hits)
        misses.add_metric([name], cache.misses)
        used.add_metric([name], float(cache.bytes_used))
    yield hits
    yield misses
    yield used
