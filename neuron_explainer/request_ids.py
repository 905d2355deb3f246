"""The id of the request being served, for every log line written while serving it.

The web layer sets it when a request (or a WebSocket connection) arrives and resets it when the answer
has gone; asyncio tasks started meanwhile inherit it, so a resolver, a loader or a job's first steps log
under the id of the request that caused them. Plain Python: the core may log with it too.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

current_request_id: ContextVar[str | None] = ContextVar("neuron_explainer_request_id", default=None)

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


def request_id_from(header: str | None) -> str:
    """A client's ``X-Request-Id`` when it is a short token (so it can be searched for in logs), else a new id."""
    return header if header is not None and _CLIENT_ID.match(header) else new_request_id()


def request_id() -> str:
    """The current request's id, or a fresh one for work no request started."""
    return current_request_id.get() or new_request_id()
