"""API-key authentication: who may run which operation.

With a key configured, mutations and subscriptions (and, with ``require_auth_for_all``, queries too)
need ``Authorization: Bearer <key>``: an HTTP header, or over a WebSocket the ``connection_init``
payload ``{"Authorization": "Bearer <key>"}`` (browsers cannot set headers on a WebSocket; a header on
the upgrade request is accepted as well). Keys are compared in constant time. A failure is a typed
``UNAUTHENTICATED`` error on that operation; the connection stays open for operations that need no key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from strawberry.types.graphql import OperationType

from neuron_explainer.errors import Unauthenticated

_SCHEME = "bearer "


def _header(headers: Any) -> str | None:
    if headers is None:
        return None
    value = headers.get("authorization")
    return value if isinstance(value, str) else None


def presented_credential(request: Any, connection_params: Mapping[str, Any] | None) -> str | None:
    """The ``Authorization`` value a client sent: WebSocket ``connection_init`` payload first, then the header."""
    if isinstance(connection_params, Mapping):
        for key, value in connection_params.items():
            if isinstance(key, str) and key.lower() == "authorization" and isinstance(value, str):
                return value
    return _header(getattr(request, "headers", None))


class ApiKeyCheck:
    """``caller = check(operation, credential)``: the caller's identity, or ``Unauthenticated``."""

    def __init__(self, api_key: str | None, require_for_all: bool = False) -> None:
        if api_key is not None and not api_key.strip():
            raise ValueError("the API key is empty")
        self._key = api_key.encode() if api_key else None
        self.require_for_all = require_for_all

    def required(self, operation: OperationType) -> bool:
        return self._key is not None and (self.require_for_all or operation is not OperationType.QUERY)

    def check(self, operation: OperationType, credential: str | None) -> str | None:
        """The caller id (a hash of the key, never the key) when a valid key was sent; None when no key
        was sent and none is needed. Raises ``Unauthenticated`` when one is needed and missing or wrong."""
        key = self._token(credential)
        valid = key is not None and self._key is not None and hmac.compare_digest(key, self._key)
        if valid:
            assert key is not None
            return "key:" + hashlib.sha256(key).hexdigest()[:16]
        if not self.required(operation):
            return None
        if credential is None:
            raise Unauthenticated(f"{operation.value} operations need 'Authorization: Bearer <key>'", reason="missing")
        raise Unauthenticated("the API key is not valid", reason="invalid")

    @staticmethod
    def _token(credential: str | None) -> bytes | None:
        if credential is None or credential[: len(_SCHEME)].lower() != _SCHEME:
            return None
        return credential[len(_SCHEME) :].strip().encode("utf-8", "replace")
