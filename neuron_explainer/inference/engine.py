"""``InferenceEngine``: one worker thread owns the model; concurrent requests share padded batches.

Callers ``await engine.run(request)`` from the event loop and get exactly one result or one error.

When a batch is released (the whole policy): pending requests wait in a queue on the event loop.
The dispatcher releases a batch only while the worker is idle (at most one batch in flight, so
requests arriving during a forward pile up and go together in the next one), and then as soon as
either ``max_batch_size`` distinct requests are pending or the oldest pending request has waited
``max_wait_ms`` (default 0: release at once; requests that arrive in the same event-loop tick, or
while the previous batch runs, still share a batch, and a lone request pays no wait). A batch takes
up to ``max_batch_size`` distinct requests in arrival order, all of the same gradient mode
(requests needing a backward pass never share a batch with forward-only ones).
Identical requests (equal ``ForwardRequest``s) run as one row and share one ``ForwardResult``, which
callers must treat as read-only.

Errors: a request that is invalid on its own fails alone with ``BadInput`` before batching. A CUDA
out-of-memory error frees the cache, splits the batch in halves and retries each; a single request
that still does not fit fails with ``LimitExceeded`` and the engine goes on. Any other exception in
a batch of several is retried row by row, so only the request that fails alone gets its exception
and one client's bad request never fails its batch-mates.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from neuron_explainer.errors import LimitExceeded
from neuron_explainer.inference.forward import run_batch
from neuron_explainer.inference.requests import ForwardRequest, ForwardResult
from neuron_explainer.inference.validation import validate_request
from neuron_explainer.models.loaded_model import LoadedModel

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class _Pending:
    request: ForwardRequest
    futures: list[asyncio.Future[ForwardResult]]
    arrived: float


class InferenceEngine:
    def __init__(
        self,
        model: LoadedModel,
        max_batch_size: int = 16,
        max_wait_ms: float = 0.0,
        *,
        before_batch: Callable[[Sequence[ForwardRequest]], None] | None = None,
        torch_threads: int | None = None,
        forward: Callable[[LoadedModel, Sequence[ForwardRequest]], list[ForwardResult]] | None = None,
    ) -> None:
        """``before_batch`` runs on the worker thread before each forward; a test seam that may raise
        ``torch.cuda.OutOfMemoryError`` to simulate running out of GPU memory. ``torch_threads`` sets
        the worker thread's intra-op threads (torch keeps that setting per thread). ``forward`` replaces
        ``run_batch`` (``bench/scale.py`` measures routing and batching with a forward that only waits)."""
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms}")
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be >= 1, got {torch_threads}")
        self.model = model
        self.torch_threads = torch_threads
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._before_batch = before_batch
        self._forward = forward or run_batch
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="inference",
            initializer=self._init_worker,
        )
        self._pending: dict[ForwardRequest, _Pending] = {}
        self._wakeup: asyncio.Event | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._closed = False
        self.forward_count = 0
        """Forward passes actually run (an OOM retry counts each smaller pass); for tests and metrics."""
        self.backward_count = 0
        """Backward passes run: one per batch of requests that need gradients."""
        self.oom_count = 0
        self.in_process = True
        """``call`` runs ``fn`` on this process's worker thread: ``fn`` may share state with its caller."""
        self.batch_sizes: dict[int, int] = {}
        """How many batches ran with each number of distinct requests (for /metrics)."""

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch (identical requests sharing a row count once each)."""
        return sum(len(p.futures) for p in self._pending.values())

    # ---- public surface -------------------------------------------------------------------
    async def run(self, request: ForwardRequest) -> ForwardResult:
        """The result of ``request``, batched with whatever else is pending."""
        if self._closed:
            raise RuntimeError("the inference engine is closed")
        validate_request(self.model, request)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ForwardResult] = loop.create_future()
        pending = self._pending.get(request)
        if pending is None:
            self._pending[request] = _Pending(request, [future], time.monotonic())
        else:
            pending.futures.append(future)
        self._ensure_dispatcher()
        assert self._wakeup is not None
        self._wakeup.set()
        return await future

    async def call(self, fn: Callable[[LoadedModel], T]) -> T:
        """Run ``fn(model)`` on the worker thread (between batches) and return its result."""
        if self._closed:
            raise RuntimeError("the inference engine is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self.model)

    async def close(self) -> None:
        """Stop taking requests, fail what is still queued, wait for the batch in flight."""
        self._closed = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        for pending in self._pending.values():
            for future in pending.futures:
                if not future.done():
                    future.set_exception(RuntimeError("the inference engine closed before this request ran"))
        self._pending.clear()
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    # ---- dispatching ----------------------------------------------------------------------
    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._wakeup = asyncio.Event()
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_forever())

    async def _dispatch_forever(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            oldest = min(p.arrived for p in self._pending.values())
            delay = oldest + self.max_wait_s - time.monotonic()
            if len(self._pending) < self.max_batch_size and delay > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
                continue
            batch = self._take_batch()
            try:
                outcomes = await loop.run_in_executor(self._executor, self._run_on_worker, [p.request for p in batch])
            except asyncio.CancelledError:
                for p in batch:
                    _settle(p, RuntimeError("the inference engine closed while this request ran"))
                raise
            except Exception as exc:  # a batch-wide failure goes to every waiter
                log.exception("inference batch of %d failed", len(batch))
                for p in batch:
                    _settle(p, exc)
                continue
            for p, outcome in zip(batch, outcomes, strict=True):
                _settle(p, outcome)

    def _take_batch(self) -> list[_Pending]:
        queue = sorted(self._pending.values(), key=lambda p: p.arrived)
        mode = queue[0].request.needs_grad
        batch = [p for p in queue if p.request.needs_grad == mode][: self.max_batch_size]
        for p in batch:
            del self._pending[p.request]
        self.batch_sizes[len(batch)] = self.batch_sizes.get(len(batch), 0) + 1
        return batch

    # ---- worker thread --------------------------------------------------------------------
    def _init_worker(self) -> None:
        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)

    def _run_on_worker(self, requests: list[ForwardRequest]) -> list[ForwardResult | BaseException]:
        """Run a batch; on CUDA OOM free the cache and retry in halves, down to single requests."""
        try:
            if self._before_batch is not None:
                self._before_batch(requests)
            self.forward_count += 1
            results: list[ForwardResult | BaseException] = list(self._forward(self.model, requests))
            self.backward_count += any(r.needs_grad for r in requests)
            return results
        except torch.cuda.OutOfMemoryError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "CUDA out of memory"
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
            log.warning("a batch of %d failed (%s: %s): retrying row by row", len(requests), type(exc).__name__, exc)
            return [outcome for r in requests for outcome in self._run_on_worker([r])]
        # Out of the except block the traceback, and with it the failed pass's tensors, is gone.
        self.oom_count += 1
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(requests) == 1:
            n = len(requests[0].tokens)
            log.warning("CUDA out of memory on a single request of %d tokens", n)
            return [
                LimitExceeded(
                    f"out of GPU memory running one request of {n} tokens ({reason}); try a shorter prompt",
                    limit="gpu_memory",
                    tokens=n,
                )
            ]
        half = len(requests) // 2
        log.warning("CUDA out of memory on a batch of %d: retrying as two halves", len(requests))
        return self._run_on_worker(requests[:half]) + self._run_on_worker(requests[half:])


def _settle(pending: _Pending, outcome: ForwardResult | BaseException) -> None:
    for future in pending.futures:
        if future.done():  # the caller was cancelled
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
