"""``BoundedBackend``: live work queued with a bound, in front of any ``InferenceBackend``.

At most ``max_queued`` forward requests wait or run at once (whatever runs the model: the local engine
or a Ray Serve deployment); one more is refused at once with ``LimitExceeded`` (``live_queue``) and a
``retryAfter`` hint in seconds. A waiting request costs the event loop nothing (a future), so stored
queries, which never enter this queue, stay fast however many live prompts wait; coalescing is
untouched, since a full queue is exactly what the engine batches from. The request policy refuses a
live operation before it executes when the queue is full (``full``), so a refusal is cheap too.

The hint is the time the queue ahead, and the clients refused recently (who will be back), take to
drain at the recent rate, spread over [0.5, 1.5] of that so refused clients do not return as one herd.
``call`` (live dataset builds, one per layer) passes through.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from neuron_explainer.errors import LimitExceeded

if TYPE_CHECKING:
    from neuron_explainer.inference.backend import InferenceBackend
    from neuron_explainer.inference.requests import ForwardRequest, ForwardResult
    from neuron_explainer.models.loaded_model import LoadedModel

T = TypeVar("T")
_RATE_HALF_LIFE = 32.0
"""Completions the recent-rate estimate forgets half of its past over."""


class BoundedBackend:
    def __init__(self, backend: InferenceBackend, max_queued: int) -> None:
        if max_queued < 1:
            raise ValueError(f"max_queued must be >= 1, got {max_queued}")
        self.backend = backend
        self.max_queued = max_queued
        self.queued = 0
        """Requests waiting or running now."""
        self.refused = 0
        self._per_request_s = 0.05  # recent seconds per completed request (a guess until measured)
        self._last_done = time.monotonic()
        self._refusals: list[float] = []  # when recent refusals happened (the last ``_window_s``)
        self._window_s = 1.0

    @property
    def model(self) -> LoadedModel:
        return self.backend.model

    @property
    def max_batch_size(self) -> int:
        return self.backend.max_batch_size

    @property
    def max_wait_s(self) -> float:
        return self.backend.max_wait_s

    @property
    def in_process(self) -> bool:
        return self.backend.in_process

    @property
    def forward_count(self) -> int:
        return self.backend.forward_count

    @property
    def backward_count(self) -> int:
        return self.backend.backward_count

    @property
    def oom_count(self) -> int:
        return self.backend.oom_count

    def full(self) -> bool:
        return self.queued >= self.max_queued

    def retry_after(self) -> float:
        """Seconds (0.1 .. 30) until the queue and the recently refused would drain, jittered."""
        now = time.monotonic()
        self._refusals = [t for t in self._refusals if now - t < self._window_s]
        ahead = self.queued + len(self._refusals)
        drain = ahead * self._per_request_s
        self._window_s = min(30.0, max(1.0, drain))  # refused clients come back within about one drain
        return round(min(30.0, max(0.1, drain * random.uniform(0.5, 1.5))), 1)

    def refusal(self) -> LimitExceeded:
        self.refused += 1
        wait = self.retry_after()
        self._refusals.append(time.monotonic())
        return LimitExceeded(
            f"{self.queued} live requests are queued (at most {self.max_queued}); retry in {wait:g} s",
            limit="live_queue",
            allowed=self.max_queued,
            retryAfter=wait,
        )

    async def run(self, request: ForwardRequest) -> ForwardResult:
        if self.full():
            raise self.refusal()
        self.queued += 1
        try:
            return await self.backend.run(request)
        finally:
            self.queued -= 1
            now = time.monotonic()
            gap = now - self._last_done
            self._last_done = now
            if gap < 5.0:  # an idle pause says nothing about the rate
                self._per_request_s += (gap - self._per_request_s) / _RATE_HALF_LIFE

    async def call(self, fn: Callable[[LoadedModel], T]) -> T:
        return await self.backend.call(fn)

    async def close(self) -> None:
        await self.backend.close()
