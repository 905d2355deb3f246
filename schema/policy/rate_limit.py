"""Per-caller token buckets for the mutations that spend LLM money.

A caller is its API key (or, on an open server, its client address). Each bucket holds up to
``per_minute`` tokens and refills continuously at ``per_minute / 60`` per second, so a caller may
burst a minute's worth and then runs at the steady rate. Taking is all-or-nothing: a request with three
explain mutations takes three tokens or none. Buckets idle long enough to be full again are dropped,
so memory stays bounded by the callers active in the last minute.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    capacity: float
    refill_per_s: float
    tokens: float
    updated: float

    def _refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.refill_per_s)
        self.updated = now

    def take(self, n: float, now: float) -> float:
        """Take ``n`` tokens; 0.0 when taken, else the seconds until ``n`` would be available."""
        self._refill(now)
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        if n > self.capacity:
            return float("inf")
        return (n - self.tokens) / self.refill_per_s


class RateLimiter:
    """``retry_after = limiter.take(caller, n)``: 0.0 when allowed."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        if per_minute <= 0:
            raise ValueError(f"per_minute must be > 0, got {per_minute}")
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, caller: str, n: int = 1) -> float:
        now = self._clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) > 10_000:
                self._forget_full(now)
            bucket = TokenBucket(self.per_minute, self.per_minute / 60.0, self.per_minute, now)
            self._buckets[caller] = bucket
        return bucket.take(n, now)

    def _forget_full(self, now: float) -> None:
        full_after = 60.0
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.updated < full_after}
