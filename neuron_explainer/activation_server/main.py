"""The composition root and command line.

Builds every long-lived service (store, dataset registry, record reader, model + inference engine, LLM
client, job manager) inside the Starlette lifespan and hands them to resolvers through ``Context``.
``python neuron_explainer/activation_server/main.py --model_name gpt2-small --port 8000`` works as in the
original; so does ``--run_model False``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from neuron_explainer.activation_server.cli_args import parse_settings
from neuron_explainer.activation_server.graphql_app import STATIC_DIR, GraphQLApp
from neuron_explainer.activation_server.origins import OriginPolicy
from neuron_explainer.activation_server.services import close_services, open_services
from neuron_explainer.settings import ServerSettings
from resolvers.context import Services

log = logging.getLogger("neuron_explainer.server")


def build_app(settings: ServerSettings) -> Starlette:
    """The whole server as an ASGI app; services are built when the lifespan starts."""
    policy = OriginPolicy(settings.allowed_origins)
    holder: dict[str, Services] = {}

    class _LazyGraphQL(GraphQLApp):
        def is_websocket_origin_allowed(self, request: object, origin: str) -> bool:
            return policy.allows(origin)

    graphql_app: _LazyGraphQL | None = None

    class _GraphQLEndpoint:
        """An ASGI app forwarding to the GraphQL app, which exists only once the lifespan built services."""

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            assert graphql_app is not None, "lifespan has not started"
            await graphql_app(scope, receive, send)

    graphql_endpoint = _GraphQLEndpoint()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        nonlocal graphql_app
        services = await open_services(settings)
        holder["services"] = services
        graphql_app = _LazyGraphQL(services)
        app.state.services = services
        try:
            yield
        finally:
            await close_services(services)

    async def health(request: Request) -> Response:
        services = holder.get("services")
        return JSONResponse(
            {
                "status": "ok",
                "model": settings.model_name,
                "modelRunning": services is not None and services.engine is not None,
                "dataRoot": services.reader.store.location if services else None,
            }
        )

    async def root(request: Request) -> Response:
        viewer = STATIC_DIR / "viewer" / "index.html"
        if viewer.is_file():
            return HTMLResponse(viewer.read_text(encoding="utf-8"))
        return JSONResponse({"Hello": "World"})

    async def dump_memory_snapshot(request: Request) -> Response:
        services = holder.get("services")
        dump = services.extras.get("dump_memory_snapshot") if services else None
        if not settings.cuda_memory_debugging or dump is None:
            return JSONResponse({"message": "start the server with --cuda_memory_debugging True"}, status_code=400)
        return JSONResponse(dump())

    routes = [
        Route("/", root),
        Route("/health", health),
        Route("/dump_memory_snapshot", dump_memory_snapshot),
        Route("/graphql", graphql_endpoint, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql_endpoint),
        Mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origin_regex=None if policy.allow_all else policy.regex,
            allow_origins=["*"] if policy.allow_all else [],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=not policy.allow_all,
        )
    ]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)


def serve(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    os.environ.setdefault("HF_HUB_OFFLINE", os.environ.get("HF_HUB_OFFLINE", "0"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # at INFO it logs ~20 lines per blob request
    # strawberry logs every GraphQL error with a traceback, user errors too; schema.errors logs the
    # internal ones, once each, with their request id.
    logging.getLogger("strawberry.execution").setLevel(logging.CRITICAL)
    settings = parse_settings(argv)
    uvicorn.run(
        build_app(settings), host=settings.host_name, port=settings.port, log_level="info", ws="websockets-sansio"
    )


def cli(argv: Sequence[str] | None = None) -> None:
    """``neuron-explainer [serve] --flags`` or ``neuron-explainer collate --flags``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "collate":
        from neuron_explainer.collation.cli import main as collate_main

        raise SystemExit(collate_main(args[1:]))
    if args and args[0] == "serve":
        args = args[1:]
    serve(args)


if __name__ == "__main__":
    cli()
