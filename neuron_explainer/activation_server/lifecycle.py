"""Start-up in the background, and the health routes that report it.

The port is bound and answering before anything slow happens: the lifespan starts ``Lifecycle.start``
as a task and returns at once, so ``/health/live`` answers while the model loads. Until the services
are open, ``ReadinessGate`` answers every route that needs them with 503 (GraphQL: a typed
``NOT_READY`` error with the phase); ``/health/ready`` turns 200 when they are. A start-up that fails
logs why, marks the process failed and asks the server to stop (the exit status is then 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from neuron_explainer.activation_server.faults import start_delay
from neuron_explainer.activation_server.services import ServerState, close_server, open_server
from neuron_explainer.errors import NeuronExplainerError
from neuron_explainer.schema.metrics import OperationObserver
from neuron_explainer.settings import ServerSettings
from neuron_explainer.storage.locations import redact

log = logging.getLogger("neuron_explainer.server")

OPEN_PATHS = ("/health", "/metrics", "/static/", "/favicon.ico")
"""Routes that work before the services are open (besides ``/``, the viewer page, which waits itself)."""


class Lifecycle:
    """Where the server is: starting (``phase``), ready (``state``) or failed (``failure``)."""

    def __init__(self, settings: ServerSettings, metrics: OperationObserver | None = None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.phase = "starting"
        self.state: ServerState | None = None
        self.failure: str | None = None
        self.on_failure: Callable[[], None] = lambda: None
        """Set by the command line to stop uvicorn; a failed start must not leave a server that never serves."""
        self._started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.state is not None and self.failure is None

    def begin(self) -> None:
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._start(), name="neuron-explainer start-up")

    async def close(self) -> None:
        log.info("shutting down")
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):  # cancelled, or the failure it already logged
                await self._task
        if self.state is not None:
            state, self.state = self.state, None
            await close_server(state)
        log.info("stopped")

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        log.info("%s", phase)

    async def _start(self) -> None:
        try:
            if delay := start_delay():  # test-only: a slow start to watch
                self._set_phase(f"waiting {delay} s (test fault)")
                await asyncio.sleep(delay)
            state = await open_server(self.settings, self.metrics, self._set_phase)
        except asyncio.CancelledError:
            raise
        except NeuronExplainerError as exc:
            self._fail(f"{exc.message} ({exc.code})")
            return
        except Exception as exc:
            log.exception("start-up failed")
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        self.state = state
        self.phase = "ready"
        datasets = Counter(spec.model for spec in state.services.registry.all())
        log.info(
            "ready in %.1f s: model %s, data from %s (datasets: %s)",
            time.monotonic() - self._started,
            state.services.model.name if state.services.model is not None else "none (--run_model False)",
            state.services.reader.store.location,
            ", ".join(f"{n} for {model}" for model, n in datasets.items()) or "none",
        )

    def _fail(self, reason: str) -> None:
        self.failure = reason
        self.phase = "failed"
        log.error("the server cannot start: %s", reason)
        self.on_failure()

    # ---- health routes ------------------------------------------------------------------------
    def _status(self) -> dict[str, object]:
        if self.failure is not None:
            return {"status": "failed", "reason": self.failure}
        if self.state is None:
            return {"status": "starting", "phase": self.phase, "elapsedS": round(time.monotonic() - self._started, 1)}
        if self.settings.api_key is not None and self.settings.require_auth_for_all:
            return {"status": "ok"}  # open to anyone (load balancers): says no more than that
        services = self.state.services
        return {
            "status": "ok",
            "model": self.settings.model_name,
            "modelRunning": services.engine is not None,
            "dataRoot": redact(services.reader.store.location),
        }

    async def live(self, request: Request) -> Response:
        """The process serves requests (200 while starting too); 503 once start-up has failed."""
        body = self._status()
        return JSONResponse({**body, "live": self.failure is None}, status_code=503 if self.failure else 200)

    async def ready_route(self, request: Request) -> Response:
        """200 once the model (if any) and the store are ready, else 503 with the phase or the failure."""
        return JSONResponse(self._status(), status_code=200 if self.ready else 503)


class ReadinessGate:
    """ASGI middleware: hands each request the open services (``request.state.server``), or answers 503
    while there are none. WebSockets are closed with 1013 (try again later)."""

    def __init__(self, app: ASGIApp, lifecycle: Lifecycle) -> None:
        self.app = app
        self.lifecycle = lifecycle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            state = self.lifecycle.state
            if state is not None:
                scope.setdefault("state", {})["server"] = state
            elif scope["path"] != "/" and not scope["path"].startswith(OPEN_PATHS):
                await self._not_ready(scope, send)
                return
        await self.app(scope, receive, send)

    async def _not_ready(self, scope: Scope, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013, "reason": "the server is starting"})
            return
        lifecycle = self.lifecycle
        message = (
            f"the server could not start: {lifecycle.failure}"
            if lifecycle.failure is not None
            else f"the server is starting ({lifecycle.phase}); try again in a moment"
        )
        body = orjson.dumps(
            {"errors": [{"message": message, "extensions": {"code": "NOT_READY", "phase": lifecycle.phase}}]}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"retry-after", b"1"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
