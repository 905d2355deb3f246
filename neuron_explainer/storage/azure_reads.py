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
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import aiohttp
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from neuron_explainer.errors import UpstreamUnavailable

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
        retry_total: int,
        retry_backoff_s: float,
    ) -> None:
        self._base = container_url.rstrip("/") + "/"
        self._container = container
        self._credential = credential
        self._location = location
        self._limit = max_concurrency
        self._timeout = aiohttp.ClientTimeout(sock_connect=connection_timeout_s, sock_read=read_timeout_s)
        self._retry_total = retry_total
        self._retry_backoff_s = retry_backoff_s
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
        for attempt in range(self._retry_total + 1):
            if attempt:
                await asyncio.sleep(self._retry_backoff_s * (0.75 + random.random() / 2))
            try:
                async with self._client().get(url) as response:
                    if response.status == 200:
                        return await response.read(), response.headers.get("ETag", "")
                    if response.status == 404 and response.headers.get("x-ms-error-code"):
                        return None
                    if response.status < 500 and response.status != 429:
                        raise self._failure(name, f"HTTP {response.status} "
                                            f"{response.headers.get('x-ms-error-code') or 'bare 404'}", response.status)
                    last = self._failure(name, f"HTTP {response.status}", response.status)
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last = e
        if isinstance(last, UpstreamUnavailable):
            raise last
        raise UpstreamUnavailable(
            f"cannot reach blob storage at {self._location} (read {name!r}): {last or 'no answer'}",
            location=self._location, blob=name,
        ) from last

    def _failure(self, name: str, why: str, status: int) -> UpstreamUnavailable:
        what = "access denied by" if status in (401, 403) else "blob service error at"
        if status == 404:
            what = "not answering as an Azure blob service:"
        return UpstreamUnavailable(f"{what} {self._location} (read {name!r}): {why}",
                                   location=self._location, blob=name, status=status)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
