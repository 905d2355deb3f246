"""The WebSocket side of GraphQL (strawberry's app: graphql-transport-ws and the legacy graphql-ws) and
GraphiQL served from local assets. Queries and mutations over HTTP are ``graphql_http.GraphQLHTTP``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import CompleteMessage, ErrorMessage
from strawberry.types.execution import PreExecutionError

from neuron_explainer.activation_server.origins import OriginPolicy
from neuron_explainer.activation_server.services import ServerState
from neuron_explainer.schema import schema
from neuron_explainer.schema.context import RequestContext, request_context

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


class LegacyWSHandler(BaseGraphQLWSHandler[RequestContext, None]):
    """The legacy graphql-ws protocol for every operation type: strawberry's handler subscribes, which
    fails a query or mutation sent over it as an internal error; ``stream`` runs each as its kind."""

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        try:
            source = await self.schema.stream(  # type: ignore[attr-defined]
                query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )
            self.subscriptions[operation_id] = source
            first = True
            async for result in source:
                if first and isinstance(result, PreExecutionError):
                    assert result.errors
                    payload = result.errors[0].formatted
                    await self.send_message(ErrorMessage(type="error", id=operation_id, payload=payload))
                    return
                await self.send_data_message(result, operation_id)  # type: ignore[arg-type]
                first = False
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        except asyncio.CancelledError:
            await self.send_message(CompleteMessage(type="complete", id=operation_id))
        finally:
            self.subscriptions.pop(operation_id, None)
            self.tasks.pop(operation_id, None)


def server_state(connection: HTTPConnection) -> ServerState:
    """The lifespan state of the server this request reached."""
    state = connection.state.server
    assert isinstance(state, ServerState), "the lifespan has not started"
    return state


def render_ide() -> HTMLResponse:
    page = STATIC_DIR / "graphiql" / "index.html"
    if page.is_file():
        return HTMLResponse(page.read_text(encoding="utf-8"))
    return HTMLResponse(_MISSING_IDE)


class GraphQLApp(GraphQL[RequestContext, None]):
    websocket_adapter_class = TextFrameAdapter
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, origins: OriginPolicy) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.origins = origins

    def is_websocket_origin_allowed(self, request: object, origin: str) -> bool:
        return self.origins.allows(origin)

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> RequestContext:
        state = server_state(request)
        return request_context(state.services, state.policy, state.responses, request, response, state.metrics)

    def decode_json(self, data: str | bytes) -> object:
        """WebSocket messages: a frame that nests too deep to read is dropped like any unparsable one."""
        try:
            return json.loads(data)
        except RecursionError:
            raise json.JSONDecodeError("the message nests too deep to read", "", 0) from None

    def encode_json(self, data: object) -> bytes:
        # orjson: ~10x faster than json.dumps on large float lists; NaN/inf become null.
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return render_ide()
