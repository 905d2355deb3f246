"""GraphQL over HTTP as the GraphQL-over-HTTP specification says (the ``graphql-http`` audit passes).

- ``POST`` with an ``application/json`` body ``{query, operationName?, variables?, extensions?}``;
  ``GET`` with the same as URL parameters (``variables`` and ``extensions`` JSON-encoded), queries only:
  a mutation by ``GET`` is ``405`` with ``Allow: POST``. Subscriptions are refused with a typed
  ``BAD_USER_INPUT`` naming the WebSocket protocols that serve them.
- The response is ``application/graphql-response+json`` when the client accepts it, else
  ``application/json``; anything else it insists on is ``406``. With ``graphql-response+json`` a
  request that never ran (a body, parse, validation or policy error: no ``data``) is ``400``
  (``401`` for a missing or wrong key); with ``application/json`` every GraphQL response is ``200``.
- A body that is not a UTF-8 JSON object, or nests too deep to read, is ``400``; parameters of the
  wrong type are ``400``. ``LIMIT_EXCEEDED`` with ``retryAfter`` also sets ``Retry-After``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.types.graphql import OperationType

from neuron_explainer.activation_server.services import ServerState
from neuron_explainer.schema import schema
from neuron_explainer.schema.context import request_context

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
_ALLOWED = {"GET": {OperationType.QUERY}, "POST": {OperationType.QUERY, OperationType.MUTATION}}
_SUBSCRIPTIONS = "subscriptions are served over a WebSocket at /graphql (graphql-transport-ws or graphql-ws)"


class RequestError(Exception):
    """The request is not a GraphQL request this server can run: answered with ``status`` and no data."""

    def __init__(self, status: int, message: str, code: str = "BAD_USER_INPUT", **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers


def _media_types(accept: str) -> list[tuple[str, float]]:
    out = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        if media:
            out.append((media.lower(), q))
    return out


def negotiate(accept: str | None) -> str | None:
    """The response media type, or None when the client accepts neither JSON kind."""
    if not accept:
        return JSON
    ranked = sorted(_media_types(accept), key=lambda mq: -mq[1])
    for media, q in ranked:
        if q <= 0:
            continue
        if media == GRAPHQL_RESPONSE:
            return GRAPHQL_RESPONSE
        if media in (JSON, "application/*", "*/*"):
            return JSON
    return None


def _json_param(value: Any, name: str, from_url: bool) -> dict[str, Any] | None:
    if from_url and isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise RequestError(400, f"the {name} parameter is not JSON") from None
    if value is None or isinstance(value, dict):
        return value
    raise RequestError(400, f"the {name} parameter must be an object (map) or null")


def parameters(raw: Mapping[str, Any], from_url: bool) -> tuple[str, str | None, dict[str, Any] | None]:
    """(query, operationName, variables) of a request, each of the type the specification requires."""
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise RequestError(400, "the request has no query (a non-empty string)")
    operation_name = raw.get("operationName")
    if operation_name == "" and from_url:
        operation_name = None
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError(400, "the operationName parameter must be a string or null")
    variables = _json_param(raw.get("variables"), "variables", from_url)
    _json_param(raw.get("extensions"), "extensions", from_url)
    return query, operation_name, variables


async def read_body(request: Request) -> dict[str, Any]:
    content_type = request.headers.get("content-type")
    if not content_type:
        raise RequestError(415, "a POST needs Content-Type: application/json")
    media, *params = (p.strip().lower() for p in content_type.split(";"))
    if media != JSON:
        raise RequestError(415, f"unsupported content type {media!r}: POST application/json", code="BAD_USER_INPUT")
    charset = next((p.split("=", 1)[1].strip('"') for p in params if p.startswith("charset=")), "utf-8")
    if charset not in ("utf-8", "utf8"):
        raise RequestError(415, f"unsupported charset {charset!r}: bodies are UTF-8")
    data = await request.body()
    try:
        value = orjson.loads(data)  # fast; the standard library reads what orjson will not (ints past 64 bits)
    except orjson.JSONDecodeError:
        value = None
    try:
        value = json.loads(data) if value is None else value
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the request body is not UTF-8: {exc.reason}") from None
    except ValueError as exc:
        raise RequestError(400, f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise RequestError(400, "the request body nests too deep to read") from None
    if not isinstance(value, dict):
        raise RequestError(400, "the request body must be a JSON object")
    return value


def _retry_after(errors: list[dict[str, Any]]) -> str | None:
    waits = [e.get("extensions", {}).get("retryAfter") for e in errors]
    finite = [float(w) for w in waits if isinstance(w, int | float) and math.isfinite(w)]
    return str(max(1, math.ceil(max(finite)))) if finite else None


class GraphQLHTTP:
    """The ``/graphql`` endpoint for GET and POST (WebSockets go to strawberry's app)."""

    def __init__(self, state_of: Callable[[Request], ServerState], render_ide: Callable[[], HTMLResponse]) -> None:
        self.state_of = state_of
        self.render_ide = render_ide

    async def handle(self, request: Request) -> Response:
        media = negotiate(request.headers.get("accept"))
        if request.method == "GET" and "query" not in request.query_params and _wants_html(request):
            return self.render_ide()
        if media is None:
            return _error_response(JSON, RequestError(406, f"responses are {GRAPHQL_RESPONSE} or {JSON}"))
        try:
            if request.method == "GET":
                raw: Mapping[str, Any] = request.query_params
            else:
                raw = await read_body(request)
            query, operation_name, variables = parameters(raw, from_url=request.method == "GET")
            result = await self._execute(request, query, operation_name, variables)
        except RequestError as error:
            return _error_response(media, error)
        return _result_response(media, result)

    async def _execute(
        self, request: Request, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> ExecutionResult:
        state = self.state_of(request)
        context = request_context(state.services, state.policy, state.responses, request, None, state.metrics)
        try:
            return await schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation_name,
                allowed_operation_types=_ALLOWED[request.method],
            )
        except InvalidOperationTypeError as error:
            if error.operation_type is OperationType.SUBSCRIPTION:
                raise RequestError(400, _SUBSCRIPTIONS) from None
            raise RequestError(405, "mutations need POST", Allow="POST") from None
        except CannotGetOperationTypeError:
            raise RequestError(400, f"the document has no operation named {operation_name!r}") from None


def _wants_html(request: Request) -> bool:
    return "text/html" in (request.headers.get("accept") or "")


def _formatted(result: ExecutionResult) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if not isinstance(result, PreExecutionError):
        body["data"] = result.data
    if result.errors:
        errors = [e.formatted for e in result.errors]
        for error in errors:
            extensions = error.setdefault("extensions", {})
            extensions.setdefault(
                "code", "GRAPHQL_VALIDATION_FAILED" if "path" not in error else "INTERNAL_SERVER_ERROR"
            )
        body["errors"] = errors
    if result.extensions:
        body["extensions"] = result.extensions
    return body


def _result_response(media: str, result: ExecutionResult) -> Response:
    body = _formatted(result)
    errors: list[dict[str, Any]] = body.get("errors") or []
    status = 200
    if media == GRAPHQL_RESPONSE and "data" not in body:
        codes = {e["extensions"].get("code") for e in errors}
        status = 401 if codes == {"UNAUTHENTICATED"} else 400
    headers = {}
    if (wait := _retry_after(errors)) is not None:
        headers["Retry-After"] = wait
    return Response(orjson.dumps(body), status, headers, media_type=f"{media}; charset=utf-8")


def _error_response(media: str, error: RequestError) -> Response:
    body = {"errors": [{"message": error.message, "extensions": {"code": error.code}}]}
    # With plain JSON the specification keeps 200 for GraphQL responses, but these never were one.
    return Response(orjson.dumps(body), error.status, error.headers, media_type=f"{media}; charset=utf-8")
