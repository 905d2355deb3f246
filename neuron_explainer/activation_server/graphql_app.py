"""The Strawberry ASGI app: per-request context and GraphiQL served from local assets."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.types import ExecutionResult

from resolvers.context import Context, Services, build_context
from schema import schema

STATIC_DIR = Path(__file__).parent / "static"

_MISSING_IDE = """<!doctype html><title>GraphiQL not built</title>
<p>The GraphiQL assets are built by the setup command (<code>npm run build</code>);
POST queries to this URL meanwhile.</p>"""


class TextFrameAdapter(ASGIWebSocketAdapter):
    """Subscription messages in text frames: strawberry sends whatever ``encode_json`` returns, and our
    orjson bytes would go out as binary frames, which graphql-transport-ws clients reject."""

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await self.ws.send_text(orjson.dumps(message).decode())
        except WebSocketDisconnect as exc:
            raise WebSocketDisconnected from exc


class GraphQLApp(GraphQL[Context, None]):
    websocket_adapter_class = TextFrameAdapter

    def __init__(self, services: Services, allowed_origins: list[str] | None = None) -> None:
        kwargs: dict[str, Any] = {"graphql_ide": "graphiql"}
        if allowed_origins is not None:
            kwargs["allowed_origins"] = allowed_origins
        super().__init__(schema, **kwargs)
        self.services = services

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        return build_context(self.services, request, response)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        # Every error leaves with a code, including the few (syntax errors under the parser cache) that
        # reach here without passing the schema's error extension.
        response = await super().process_result(request, result)
        errors: list[dict[str, Any]] = response.get("errors") or []  # type: ignore[assignment]
        for error in errors:
            extensions = error.setdefault("extensions", {})
            extensions.setdefault(
                "code", "GRAPHQL_VALIDATION_FAILED" if "path" not in error else "INTERNAL_SERVER_ERROR"
            )
        return response

    def decode_json(self, data: str | bytes) -> object:
        """A body that is not UTF-8 JSON, or JSON that is no object (or batch list), is the client's
        error (400), where strawberry would answer 500."""
        try:
            value = json.loads(data)
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(f"request body is not UTF-8: {exc.reason}", "", 0) from exc
        if not isinstance(value, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return value

    def encode_json(self, data: object) -> bytes:
        # orjson: ~10x faster than json.dumps on large float lists; NaN/inf become null.
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        page = STATIC_DIR / "graphiql" / "index.html"
        if page.is_file():
            return HTMLResponse(page.read_text(encoding="utf-8"))
        return HTMLResponse(_MISSING_IDE)
