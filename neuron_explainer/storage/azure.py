"""``AzureStore``: a container (and a prefix inside it) in Azure Blob Storage, Azurite included."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob.aio import BlobServiceClient

from neuron_explainer.errors import BadInput
from neuron_explainer.storage.azure_errors import AzureRetry, first_line, service_error, unreachable
from neuron_explainer.storage.azure_reads import BlobGetter
from neuron_explainer.storage.base import PreconditionFailed
from neuron_explainer.storage.paths import check_path, check_prefix

_CONTAINER = re.compile(r"^(\$root|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$")


class AzureStore:
    """Blobs named ``{prefix}/{path}`` in one container, over one shared aio client (one aiohttp session).

    Give exactly one of ``connection_string`` (Azurite: ``UseDevelopmentStorage=true`` or the explicit
    devstoreaccount1 string) or ``account_url`` (+ ``credential``; ``None`` = anonymous, which reads
    public containers such as ``https://openaipublic.blob.core.windows.net/neuron-explainer/``).

    Fails fast: the SDK's default retry policy waits 15 s, 18 s, 24 s between tries, so an unreachable
    account would hang a request for a minute; here a request makes ``1 + retry_total`` tries about
    ``retry_backoff_s`` apart, with a ``connection_timeout_s`` per try. ``get`` of a missing blob is
    ``None``, never an error; every other failure is ``UpstreamUnavailable`` naming the location. The
    container is created on the first write that finds it missing.
    """

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        credential: Any = None,
        max_concurrency: int = 32,
        connection_timeout_s: float = 3.0,
        read_timeout_s: float = 20.0,
        retry_total: int = 2,
        retry_backoff_s: float = 0.5,
    ) -> None:
        if (connection_string is None) == (account_url is None):
            raise BadInput("AzureStore needs exactly one of connection_string or account_url")
        if not _CONTAINER.match(container):
            raise BadInput(f"{container!r} is not a valid Azure container name", container=container)
        if max_concurrency < 1:
            raise BadInput("max_concurrency must be at least 1", max_concurrency=max_concurrency)
        prefix = prefix.strip("/")
        if prefix:
            check_prefix(prefix)
        self._prefix = f"{prefix}/" if prefix else ""
        retry = AzureRetry(retry_total, retry_backoff_s)
        config: dict[str, Any] = {
            "retry_policy": retry.sdk_policy(),
            "connection_timeout": connection_timeout_s,
            "read_timeout": read_timeout_s,
        }
        try:
            if connection_string is not None:
                self._service = BlobServiceClient.from_connection_string(connection_string, **config)
            else:
                assert account_url is not None
                self._service = BlobServiceClient(account_url, credential=credential, **config)
        except ValueError as e:
            raise BadInput(f"cannot use Azure storage settings: {e}") from e
        self._container = self._service.get_container_client(container)
        scheme, netloc, url_path, _query, _fragment = urlsplit(self._container.url)
        self._location = urlunsplit((scheme, netloc, url_path.rstrip("/") + "/" + self._prefix, "", ""))
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._create_lock = asyncio.Lock()
        self._container_ready = False
        credential = self._service.credential
        self._getter: BlobGetter | None = None
        if BlobGetter.supports(credential):
            self._getter = BlobGetter(
                self._container.url,
                container,
                credential,
                location=self._location,
                max_concurrency=max_concurrency,
                connection_timeout_s=connection_timeout_s,
                read_timeout_s=read_timeout_s,
                retry=retry,
            )

    @property
    def location(self) -> str:
        return self._location

    @property
    def container(self) -> str:
        return self._container.container_name

    @property
    def prefix(self) -> str:
        return self._prefix

    async def get(self, path: str) -> bytes | None:
        found = await self.get_with_etag(path)
        return None if found is None else found[0]

    async def get_with_etag(self, path: str) -> tuple[bytes, str] | None:
        name = self._prefix + check_path(path)
        if self._getter is not None:
            async with self._semaphore:
                return await self._getter.get(name)
        async with self._semaphore:
            with self._errors("read", path):
                try:
                    downloader = await self._container.download_blob(name)
                    data = await downloader.readall()
                except ResourceNotFoundError as e:
                    self._check_is_blob_service(e, "read", path)
                    return None
        etag = downloader.properties.etag
        assert isinstance(data, bytes) and isinstance(etag, str)
        return data, etag

    async def put(self, path: str, data: bytes, if_match: str | None = None) -> str:
        name = self._prefix + check_path(path)
        conditions: dict[str, Any] = {"overwrite": if_match != ""}
        if if_match:
            conditions.update(etag=if_match, match_condition=MatchConditions.IfNotModified)
        async with self._semaphore:
            with self._errors("write", path):
                for attempt in range(2):
                    try:
                        result = await self._container.get_blob_client(name).upload_blob(data, **conditions)
                        return str(result["etag"])
                    except (ResourceExistsError, ResourceModifiedError) as e:
                        raise PreconditionFailed(f"{path!r}: {first_line(e)}") from e
                    except ResourceNotFoundError as e:
                        if if_match:  # a blob that is not there cannot match an ETag
                            raise PreconditionFailed(f"{path!r} does not exist") from e
                        if attempt or getattr(e, "error_code", None) != "ContainerNotFound":
                            raise
                        await self._create_container()
                    except HttpResponseError as e:
                        if e.status_code in (409, 412):
                            raise PreconditionFailed(f"{path!r}: {first_line(e)}") from e
                        raise
        raise AssertionError("unreachable")

    async def list(self, prefix: str) -> list[str]:
        start = self._prefix + check_prefix(prefix)
        names: list[str] = []
        async with self._semaphore:
            with self._errors("list", prefix):
                try:
                    async for name in self._container.list_blob_names(name_starts_with=start or None):
                        names.append(name[len(self._prefix) :])
                except ResourceNotFoundError as e:
                    self._check_is_blob_service(e, "list", prefix)
                    return []
        return sorted(names)

    async def list_times(self, prefix: str) -> builtins.list[tuple[str, float]]:
        start = self._prefix + check_prefix(prefix)
        found: builtins.list[tuple[str, float]] = []
        async with self._semaphore:
            with self._errors("list", prefix):
                try:
                    async for blob in self._container.list_blobs(name_starts_with=start or None):
                        found.append((blob.name[len(self._prefix) :], blob.last_modified.timestamp()))
                except ResourceNotFoundError as e:
                    self._check_is_blob_service(e, "list", prefix)
                    return []
        return sorted(found)

    async def delete(self, path: str) -> None:
        name = self._prefix + check_path(path)
        async with self._semaphore:
            with self._errors("delete", path):
                try:
                    await self._container.delete_blob(name)
                except ResourceNotFoundError as e:
                    self._check_is_blob_service(e, "delete", path)

    async def close(self) -> None:
        if self._getter is not None:
            await self._getter.close()
        await self._service.close()

    async def _create_container(self) -> None:
        async with self._create_lock:
            if self._container_ready:
                return
            with contextlib.suppress(ResourceExistsError):
                await self._container.create_container()
            self._container_ready = True

    def _check_is_blob_service(self, e: ResourceNotFoundError, verb: str, path: str) -> None:
        """A 404 is a miss only if the blob service said so: Azure and Azurite always name the error
        (``x-ms-error-code``). A bare 404 comes from something else at that URL (a proxy, a web
        server, a wrong host), and treating it as "no such blob" would hide the misconfiguration."""
        if getattr(e, "error_code", None) is None:
            raise service_error(self._location, verb, path, "bare 404", 404) from e

    @contextlib.contextmanager
    def _errors(self, verb: str, path: str) -> Iterator[None]:
        """Turn the SDK's and aiohttp's failures into ``UpstreamUnavailable`` naming where and what."""
        try:
            yield
        except HttpResponseError as e:
            status = 401 if isinstance(e, ClientAuthenticationError) else (e.status_code or 0)
            code = getattr(e, "error_code", None)
            error_code = None if code is None else str(getattr(code, "value", code))
            raise service_error(self._location, verb, path, first_line(e), status, error_code) from e
        except (TimeoutError, AzureError, aiohttp.ClientError, OSError) as e:
            raise unreachable(self._location, verb, path, e) from e
