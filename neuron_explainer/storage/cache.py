"""``ByteLRU``: an in-memory cache bounded by bytes, with in-flight de-duplication of loads."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ByteLRU(Generic[K, V]):
    """Least-recently-used eviction by total size, where each entry's size is given by the caller.

    Sizes are whatever the caller measures (for records: bytes of the blob they were decoded from);
    the bound is on their sum. An entry larger than ``max_bytes`` is returned but never stored.
    With ``ttl_s`` entries also expire that many seconds after they were stored (for data that can
    change under us, such as explanations that jobs append to).

    ``get_or_load`` runs at most one load per key at a time: ten concurrent asks for one missing blob
    download it once and all ten get the result (or the error). ``None`` from a loader means "does not
    exist" and is not cached. A waiter that is cancelled does not cancel the load for the others.
    """

    def __init__(self, max_bytes: int, *, ttl_s: float | None = None) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._entries: OrderedDict[K, tuple[V, int, float]] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[K, asyncio.Task[V | None]] = {}
        self.hits = 0
        self.misses = 0
        self.loads = 0
        self.evictions = 0

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return self._peek(key) is not None

    def get(self, key: K) -> V | None:
        entry = self._peek(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[0]

    def peek(self, key: K) -> V | None:
        """The value without counting a hit or refreshing its recency."""
        entry = self._peek(key)
        return entry[0] if entry is not None else None

    def put(self, key: K, value: V, size: int) -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        self._drop(key)
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size, time.monotonic())
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, (_, old_size, _) = self._entries.popitem(last=False)
            self._bytes -= old_size
            self.evictions += 1

    def invalidate(self, key: K) -> None:
        """Forget ``key``; a load already in flight for it will not be cached (it may be stale)."""
        self._drop(key)
        self._inflight.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    async def get_or_load(
        self, key: K, size_of: Callable[[V], int], loader: Callable[[], Awaitable[V | None]]
    ) -> V | None:
        cached = self.get(key)
        if cached is not None:
            return cached
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._load(key, size_of, loader))
            task.add_done_callback(_retrieve)  # nobody may be left to await an error
            self._inflight[key] = task
        return await asyncio.shield(task)

    async def _load(self, key: K, size_of: Callable[[V], int], loader: Callable[[], Awaitable[V | None]]) -> V | None:
        self.loads += 1
        me = asyncio.current_task()
        try:
            value = await loader()
            if value is not None and self._inflight.get(key) is me:
                self.put(key, value, size_of(value))
            return value
        finally:
            if self._inflight.get(key) is me:
                del self._inflight[key]

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1]

    def _peek(self, key: K) -> tuple[V, int, float] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.ttl_s is not None and time.monotonic() - entry[2] > self.ttl_s:
            self._drop(key)
            return None
        return entry


def _retrieve(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
