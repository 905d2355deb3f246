"""The context of a GraphQL request: the resolvers' ``Context`` plus the request policy guarding it.

Resolvers see only ``Context``; the schema extensions (``guard``, ``response_cache``) read the policy
fields added here. The GraphQL app builds one per operation from the server's lifespan state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from neuron_explainer.request_ids import request_id
from neuron_explainer.resolvers.context import Context, Services
from neuron_explainer.resolvers.loaders import Loaders

if TYPE_CHECKING:
    from neuron_explainer.schema.metrics import OperationObserver
    from neuron_explainer.schema.policy import RequestPolicy, ResponseCache


@dataclass
class RequestContext(Context):
    policy: RequestPolicy | None = None
    """API key, shape limits, cost budget, rate limits (``None``: no limits, as in core tests)."""
    responses: ResponseCache | None = None
    """Whole-result cache for queries over immutable stored data."""
    observer: OperationObserver | None = None
    """Where each operation's duration and outcome go (``/metrics``); ``None``: nowhere."""


def request_context(
    services: Services,
    policy: RequestPolicy | None,
    responses: ResponseCache | None,
    request: HTTPConnection | None = None,
    response: Response | WebSocket | None = None,
    observer: OperationObserver | None = None,
) -> RequestContext:
    return RequestContext(
        services=services,
        loaders=Loaders.create(services.reader, services.engine, services.passes),
        request_id=request_id(),  # the one the web layer logs this request under
        request=request,
        response=response,
        policy=policy,
        responses=responses,
        observer=observer,
    )
