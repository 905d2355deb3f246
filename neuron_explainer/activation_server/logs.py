"""The server's logs: text or JSON lines (``--log_format``), one level (``--log_level``), and the id of
the request being served on every line written while serving it — the access line included, which our
middleware writes (uvicorn's own access log is off, it cannot know the id).

A request's id is the client's ``X-Request-Id`` when it sends a short token, else a new one; it goes back
in the ``X-Request-Id`` response header and is the ``requestId`` of a masked internal error.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from neuron_explainer.activation_server.metrics import ServerMetrics
from neuron_explainer.request_ids import current_request_id, request_id_from

access_log = logging.getLogger("neuron_explainer.access")
TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s [%(request_id)s] %(message)s"
LEVELS = ("debug", "info", "warning", "error")
_RECORD_FIELDS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, requestId, the fields passed as ``extra=``,
    and the traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "requestId": getattr(record, "request_id", None) if getattr(record, "request_id", "-") != "-" else None,
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RECORD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(log_format: str, level: str) -> None:
    """Our handler on the root logger, so every library's lines share the format and carry the id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT, "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    quiet_libraries(level)


def quiet_libraries(level: str) -> None:
    """Library chatter that says nothing a user acts on, unless ``--log_level debug``."""
    if level == "debug":
        return
    logging.getLogger("azure").setLevel(logging.WARNING)  # at INFO it logs ~20 lines per blob request
    # strawberry logs every GraphQL error with a traceback, user errors too; schema.policy.errors logs the
    # internal ones, once each, with their request id.
    logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)
    # uvicorn's start/stop lines ("Waiting for application startup", ...): ours say where and when.
    logging.getLogger("uvicorn.error").setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))
    logging.getLogger("httpx").setLevel(logging.WARNING)


class RequestLog:
    """ASGI middleware: a request id for each request or WebSocket connection, the access line when it
    ends, and its HTTP metrics."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        rid = request_id_from(header)
        token = current_request_id.set(rid)
        started = time.perf_counter()
        status = 0 if scope["type"] == "http" else 101

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            elif message["type"] == "websocket.close" and status == 101:
                status = 403 if message.get("code", 1000) in (1008, 1013) else status
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except BaseException:
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - started
            method = scope.get("method", "WS")
            route = _route(scope)
            self.metrics.observe_http(route, method, status, seconds)
            client = scope.get("client")
            fields = {"method": method, "path": scope["path"], "status": status, "ms": round(seconds * 1000, 1)}
            access_log.info(
                '%s "%s %s" %d %.1f ms',
                f"{client[0]}:{client[1]}" if client else "-",
                method,
                scope["path"],
                status,
                seconds * 1000,
                extra={"http": fields},
            )
            current_request_id.reset(token)


def _route(scope: Scope) -> str:
    """A bounded label for the path: the route it matched, never the raw path (clients choose those)."""
    path: str = scope["path"]
    for prefix in ("/static/", "/health/"):
        if path.startswith(prefix):
            return path if prefix == "/health/" and path in ("/health/live", "/health/ready") else prefix + "*"
    if path in ("/", "/graphql", "/health", "/metrics", "/dump_memory_snapshot", "/favicon.ico"):
        return path
    return "other"
