"""The composition root and command line.

Builds every long-lived service (store, dataset registry, record reader, model + inference engine, LLM
client, job manager) in the background once the port is bound (``lifecycle.py``) and hands them to
resolvers through ``Context``. ``python neuron_explainer/activation_server/main.py --model_name gpt2-small
--port 8000`` works as in the original; so does ``--run_model False``.

Start-up order, so that what can fail fast does: parse the flags; bind the port (taken: exit 1 in a
fraction of a second); check that the model's weights can be had (``models/hub.py``, no torch); serve
``/health/live`` and ``/metrics`` at once while the model loads; answer everything once ready.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Only light imports here: the port check and the model pre-flight run before strawberry, torch and
# transformer-lens are imported (seconds), so a taken port or an unreachable model fails at once.
from neuron_explainer.activation_server.cli_args import parse_settings
from neuron_explainer.errors import NeuronExplainerError
from neuron_explainer.settings import ServerSettings

if TYPE_CHECKING:  # the app's modules are imported by build_app
    from starlette.applications import Starlette

log = logging.getLogger("neuron_explainer.server")
FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6"
fill="#1f2937"/><circle cx="9" cy="10" r="3" fill="#22c55e"/><circle cx="9" cy="22" r="3" fill="#86efac"/>
<circle cx="23" cy="16" r="3.5" fill="#16a34a"/><path d="M12 10 20 15M12 22 20 17" stroke="#e5e7eb"
stroke-width="1.6"/></svg>"""


def build_app(settings: ServerSettings) -> Starlette:
    """The whole server as an ASGI app. Its services are opened in the background when the lifespan
    starts (``app.state.lifecycle``) and reach every request as ``request.state.server`` once ready."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Mount, Route, WebSocketRoute
    from starlette.staticfiles import StaticFiles

    from neuron_explainer.activation_server.body_limit import BodyLimit
    from neuron_explainer.activation_server.graphql_app import STATIC_DIR, GraphQLApp, render_ide, server_state
    from neuron_explainer.activation_server.graphql_http import GraphQLHTTP
    from neuron_explainer.activation_server.lifecycle import Lifecycle, ReadinessGate
    from neuron_explainer.activation_server.logs import RequestLog
    from neuron_explainer.activation_server.metrics import ServerMetrics
    from neuron_explainer.activation_server.origins import OriginPolicy

    origins = OriginPolicy(settings.allowed_origins)
    metrics = ServerMetrics()
    lifecycle = Lifecycle(settings, metrics)
    metrics.watch(lambda: lifecycle.state, lambda: lifecycle.ready)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lifecycle.begin()
        try:
            yield
        finally:
            await lifecycle.close()

    async def health(request: Request) -> Response:
        """The original's ``/health``: 200 once ready (as ``/health/ready``)."""
        return await lifecycle.ready_route(request)

    async def root(request: Request) -> Response:
        viewer = STATIC_DIR / "viewer" / "index.html"
        if viewer.is_file():
            return HTMLResponse(viewer.read_text(encoding="utf-8"))
        return JSONResponse({"Hello": "World"})

    async def favicon(request: Request) -> Response:
        return Response(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})

    async def dump_memory_snapshot(request: Request) -> Response:
        """Says exactly why there is no snapshot when there is none."""
        if not settings.cuda_memory_debugging:
            return JSONResponse(
                {"message": "CUDA memory recording is off: start the server with --cuda_memory_debugging True"},
                status_code=400,
            )
        if not settings.run_model:
            return JSONResponse(
                {
                    "message": "the server runs with --run_model False: no model is loaded, so there are no CUDA "
                    "allocations to record (--cuda_memory_debugging True records the running model's)"
                },
                status_code=400,
            )
        state = lifecycle.state
        dump = state.services.memory_snapshot if state is not None else None
        if dump is None:
            return JSONResponse({"message": "the model is still loading; try again once /health/ready is 200"}, 503)
        return JSONResponse(dump())

    graphql = GraphQLApp(origins)
    routes = [
        Route("/", root),
        Route("/health", health),
        Route("/health/live", lifecycle.live),
        Route("/health/ready", lifecycle.ready_route),
        Route("/metrics", metrics.endpoint),
        Route("/favicon.ico", favicon),
        Route("/dump_memory_snapshot", dump_memory_snapshot),
        Route("/graphql", GraphQLHTTP(server_state, render_ide).handle, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    middleware = [
        Middleware(RequestLog, metrics=metrics),
        Middleware(BodyLimit, max_bytes=settings.max_body_bytes),
        Middleware(
            CORSMiddleware,
            allow_origin_regex=None if origins.allow_all else origins.regex,
            allow_origins=["*"] if origins.allow_all else [],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=not origins.allow_all,
            expose_headers=["X-Request-Id"],
        ),
        Middleware(ReadinessGate, lifecycle=lifecycle),
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.lifecycle = lifecycle
    return app


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now: uvicorn would bind only after start-up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def preflight(settings: ServerSettings) -> None:
    """What can be judged in a second: can the model's weights be had (cached, or the hub answers)?"""
    if not settings.run_model:
        if settings.cuda_memory_debugging:
            log.warning("--cuda_memory_debugging True does nothing with --run_model False: no model, no CUDA memory")
        return
    from neuron_explainer.models.hub import HF_IDS, resolve_hf

    if settings.model_name in HF_IDS:
        resolve_hf(settings.model_name, HF_IDS[settings.model_name])


def serve(argv: Sequence[str] | None = None) -> None:
    settings = parse_settings(argv)
    from neuron_explainer.activation_server.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level)
    try:
        sock = listen(settings.host_name, settings.port)
    except OSError as exc:
        log.error(
            "cannot listen on %s:%d (%s): stop what listens there (`ss -ltnp 'sport = :%d'` shows it) or pass --port N",
            settings.host_name, settings.port, exc.strerror or exc, settings.port,
        )  # fmt: skip
        raise SystemExit(1) from None
    try:
        preflight(settings)
    except NeuronExplainerError as exc:
        sock.close()
        log.error("the server cannot start: %s (%s)", exc.message, exc.code)
        raise SystemExit(1) from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "listening on http://%s:%d (viewer /, GraphiQL /graphql, /health/live, /health/ready, /metrics); starting up",
        shown, port,
    )  # fmt: skip

    import uvicorn

    app = build_app(settings)
    # log_config None and no log_level: our handler and levels stay (logs.py); uvicorn's access log is off
    # because ours carries the request id.
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        ws="websockets-sansio",
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    lifecycle = app.state.lifecycle
    lifecycle.on_failure = lambda: setattr(server, "should_exit", True)
    server.run(sockets=[sock])  # on SIGINT/SIGTERM uvicorn re-raises the signal once it has shut down
    if lifecycle.failure is not None:
        raise SystemExit(1)


def cli(argv: Sequence[str] | None = None) -> None:
    """``neuron-explainer [serve] --flags``, ``neuron-explainer collate --flags`` or ``neuron-explainer
    export|import --format neuronpedia|delphi ...``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "collate":
        from neuron_explainer.collation.cli import main as collate_main

        raise SystemExit(collate_main(args[1:]))
    if args and args[0] in ("export", "import"):
        from neuron_explainer.activation_server.exchange_cli import main as exchange_main

        raise SystemExit(exchange_main(args[0], args[1:]))
    if args and args[0] == "serve":
        args = args[1:]
    serve(args)


if __name__ == "__main__":
    cli()
