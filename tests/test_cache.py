"""ByteLRU: eviction by bytes, TTL, and one load per key however many ask at once."""

from __future__ import annotations

import asyncio

from neuron_explainer.errors import UpstreamUnavailable
from neuron_explainer.storage.cache import ByteLRU


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    cache: ByteLRU[str, str] = ByteLRU(100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # a is now more recent than b
    cache.put("c", "C", 40)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.bytes_used == 80
    cache.put("big", "X", 101)  # larger than the whole cache: not stored, nothing evicted
    assert "big" not in cache and len(cache) == 2
    cache.put("a", "A2", 70)  # replacing re-measures: c (older) goes
    assert cache.get("a") == "A2" and "c" not in cache and cache.bytes_used == 70
    assert cache.evictions == 2


async def test_lru_entries_expire_after_ttl() -> None:
    cache: ByteLRU[str, int] = ByteLRU(10, ttl_s=0.05)
    cache.put("k", 1, 1)
    assert cache.get("k") == 1
    await asyncio.sleep(0.08)
    assert cache.get("k") is None and cache.bytes_used == 0


async def test_ten_concurrent_asks_load_once() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)
    release = asyncio.Event()
    calls = 0

    async def load() -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return b"blob"

    waiters = [asyncio.ensure_future(cache.get_or_load("k", len, load)) for _ in range(10)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiters) == [b"blob"] * 10
    assert await cache.get_or_load("k", len, load) == b"blob"
    assert calls == 1 and cache.loads == 1 and cache.bytes_used == 4


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise UpstreamUnavailable("down", location="x")

    results = await asyncio.gather(*(cache.get_or_load("k", len, failing) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, UpstreamUnavailable) for r in results) and calls == 1

    async def missing() -> bytes | None:
        return None

    assert await cache.get_or_load("k", len, missing) is None
    assert "k" not in cache and calls == 1 and cache.loads == 2


async def test_a_cancelled_waiter_does_not_cancel_the_load_for_others() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)

    async def slow() -> bytes:
        await asyncio.sleep(0.05)
        return b"done"

    first = asyncio.ensure_future(cache.get_or_load("k", len, slow))
    second = asyncio.ensure_future(cache.get_or_load("k", len, slow))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == b"done"
    assert first.cancelled() and cache.loads == 1


async def test_invalidate_during_a_load_keeps_the_stale_result_out() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)
    release = asyncio.Event()

    async def load() -> bytes:
        await release.wait()
        return b"stale"

    pending = asyncio.ensure_future(cache.get_or_load("k", len, load))
    await asyncio.sleep(0.01)
    cache.invalidate("k")
    release.set()
    assert await pending == b"stale"
    assert "k" not in cache
