"""A lean GET path for Azure blobs: one aiohttp session, a container SAS or anonymous access.

The SDK's async pipeline costs about 3-5 ms of Python per request (policies, signing, response
deserialization), which caps a single process at a few hundred reads per second however many run
concurrently. Reads are the hot path of this server and records are whole-blob GETs, so they go
straight over HTTP: with an account key we sign one read-only container SAS (renewed daily) instead of
signing every request; public containers need nothing. Writes, conditional writes and listings stay
on the SDK, where ETag handling and error mapping matter more than microseconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from neuron_explainer.errors import UpstreamUnavailable
from neuron_explainer.storage.azure_errors import AzureRetry, retryable, service_error, unreachable

_SAS_LIFETIME = timedelta(days=7)
_SAS_RENEW_AFTER_S = 24 * 3600.0


class BlobGetter:
    """``await get(name) -> (bytes, etag) | None`` for blobs of one container."""

    def __init__(
        self,
        container_url: str,
        container: str,
        credential: Any,
        *,
        location: str,
        max_concurrency: int,
        connection_timeout_s: float,
        read_timeout_s: float,
        retry: AzureRetry,
    ) -> None:
        self._base = container_url.rstrip("/") + "/"
        self._container = container
        self._credential = credential
        self._location = location
        self._limit = max_concurrency
        self._timeout = aiohttp.ClientTimeout(sock_connect=connection_timeout_s, sock_read=read_timeout_s)
        self._retry = retry
        self._session: aiohttp.ClientSession | None = None
        self._sas: str | None = None
        self._sas_made_at = 0.0

    @classmethod
    def supports(cls, credential: Any) -> bool:
        """Anonymous access, or an account key we can sign a SAS with; other credentials use the SDK."""
        return credential is None or (hasattr(credential, "account_name") and hasattr(credential, "account_key"))

    def _query(self) -> str:
        if self._credential is None:
            return ""
        now = time.monotonic()
        if self._sas is None or now - self._sas_made_at > _SAS_RENEW_AFTER_S:
            self._sas = generate_container_sas(
                self._credential.account_name,
                self._container,
                account_key=self._credential.account_key,
                permission=ContainerSasPermissions(read=True),
                start=datetime.now(UTC) - timedelta(minutes=5),
                expiry=datetime.now(UTC) + _SAS_LIFETIME,
            )
            self._sas_made_at = now
        return "?" + self._sas

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._limit, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def get(self, name: str) -> tuple[bytes, str] | None:
        url = self._base + quote(name) + self._query()
        last: BaseException | None = None
        for delay in self._retry.delays():
            await asyncio.sleep(delay)
            try:
                async with self._client().get(url) as response:
                    if response.status == 200:
                        return await response.read(), response.headers.get("ETag", "")
                    code = response.headers.get("x-ms-error-code")
                    if response.status == 404 and code:
                        return None
                    why = f"HTTP {response.status} {code or ('bare 404' if response.status == 404 else '')}".strip()
                    last = service_error(self._location, "read", name, why, response.status, code)
                    if not retryable(response.status):
                        raise last
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last = e
        if isinstance(last, UpstreamUnavailable):
            raise last
        raise unreachable(self._location, "read", name, last) from last

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
