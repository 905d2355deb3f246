"""The Strawberry ASGI app: per-request context and GraphiQL served from local assets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from resolvers.context import Context, Services, build_context
from schema import schema

STATIC_DIR = Path(__file__).parent / "static"

_MISSING_IDE = """<!doctype html><title>GraphiQL not built</title>
<p>The GraphiQL assets are built by the setup command (<code>npm run build</code>); POST queries to this URL meanwhile.</p>"""


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, services: Services, allowed_origins: list[str] | None = None) -> None:
        kwargs: dict[str, Any] = {"graphql_ide": "graphiql"}
        if allowed_origins is not None:
            kwargs["allowed_origins"] = allowed_origins
        super().__init__(schema, **kwargs)
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Response | None = None) -> Context:
        return build_context(self.services, request, response)

    def encode_json(self, data: object) -> bytes:
        # orjson: ~10x faster than json.dumps on large float lists; NaN/inf become null.
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        page = STATIC_DIR / "graphiql" / "index.html"
        if page.is_file():
            return HTMLResponse(page.read_text(encoding="utf-8"))
        return HTMLResponse(_MISSING_IDE)
