"""``OverlayStore``: read from a writable store first, then a read-only one; write only to the first.

Lets a server read the public datasets (an anonymous, read-only container) while keeping what it writes
— scored explanations, live records, job logs — in a place of the user's (``--write_root``). Paths are
the same in both, so what the server wrote shadows nothing and is found by the same readers.
"""

from __future__ import annotations

import builtins

from neuron_explainer.storage.base import BlobStore


class OverlayStore:
    def __init__(self, writable: BlobStore, base: BlobStore) -> None:
        self.writable = writable
        self.base = base

    @property
    def location(self) -> str:
        return self.base.location

    async def get(self, path: str) -> bytes | None:
        data = await self.writable.get(path)
        return data if data is not None else await self.base.get(path)

    async def get_with_etag(self, path: str) -> tuple[bytes, str] | None:
        found = await self.writable.get_with_etag(path)
        if found is not None:
            return found
        data = await self.base.get(path)
        # A blob only the base has does not exist where writes go: its "ETag" is create-only (""), so
        # a compare-and-swap writer creates the copy once and retries on the copy if it lost the race.
        return None if data is None else (data, "")

    async def put(self, path: str, data: bytes, if_match: str | None = None) -> str:
        return await self.writable.put(path, data, if_match=if_match)

    async def list(self, prefix: str) -> list[str]:
        return sorted(set(await self.writable.list(prefix)) | set(await self.base.list(prefix)))

    async def list_times(self, prefix: str) -> builtins.list[tuple[str, float]]:
        found: dict[str, float] = dict(await self.base.list_times(prefix))
        found.update(await self.writable.list_times(prefix))
        return sorted(found.items())

    async def delete(self, path: str) -> None:
        """Deletes what this server wrote; the read-only base is never touched."""
        await self.writable.delete(path)

    async def close(self) -> None:
        await self.writable.close()
        await self.base.close()
