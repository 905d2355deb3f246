"""The ``BlobStore`` protocol: a few verbs over bytes at paths."""

from __future__ import annotations

import builtins
from typing import Protocol, runtime_checkable


class PreconditionFailed(Exception):
    """A conditional ``put`` lost a race: the blob changed since the ETag the caller read."""


@runtime_checkable
class BlobStore(Protocol):
    """Async blob storage. Paths are ``/``-separated and relative to the store's root.

    ``get`` returns ``None`` for a missing blob (never raises for a miss); unreachable storage raises
    ``UpstreamUnavailable``. ``put`` with ``if_match`` writes only if the blob's current ETag equals it
    (``if_match="*"`` is not used; ``if_none_match`` semantics are spelled ``if_match=""``: create only).
    """

    @property
    def location(self) -> str:
        """A readable URL of the root, for provenance and messages."""
        ...

    async def get(self, path: str) -> bytes | None: ...

    async def get_with_etag(self, path: str) -> tuple[bytes, str] | None: ...

    async def put(self, path: str, data: bytes, if_match: str | None = None) -> str:
        """Write ``data``; returns the new ETag. Raises ``PreconditionFailed`` on an ETag mismatch."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Paths of blobs under ``prefix`` (recursive), sorted."""
        ...

    async def list_times(self, prefix: str) -> builtins.list[tuple[str, float]]:
        """``(path, last modified as a Unix time)`` of blobs under ``prefix``, sorted by path."""
        ...

    async def delete(self, path: str) -> None:
        """Remove the blob; a missing one is not an error."""
        ...

    async def close(self) -> None: ...
