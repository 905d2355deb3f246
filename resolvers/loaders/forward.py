"""Batches a request's forward passes: every field that needs the same prompt (with the same ablations
and target) shares one engine call capturing the union of the hooks they asked for — one forward, and
one backward when any of them needs gradients.

Keyed by ``ForwardRequest``; requests that are ``same_pass`` are merged (``ForwardRequest.merged``).
Not strawberry's ``DataLoader``, for two reasons: different keys must merge into one pass, and the
fields of one query reach ``load`` over several event-loop iterations (each level of nesting adds
one or two), while ``DataLoader`` dispatches two iterations after its first key. This loader waits
until ``settle_ticks`` loop iterations pass with no new ``load``, so a query asking 50 nodes'
activations on one prompt — at any depth — runs one forward. A ``load`` arriving after its pass was
dispatched reuses that pass when it already captures everything asked, else runs another.

Across requests, a ``PassCache`` (when given) answers a load its recent passes cover without any
engine call, and a pass that runs captures what the cached pass of its key did too, then replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias, TypeVar

if TYPE_CHECKING:  # torch and transformer-lens stay unimported on a server without a model
    from neuron_explainer.inference.pass_cache import PassCache, PassKey
    from neuron_explainer.inference.requests import ForwardRequest, ForwardResult
    from neuron_explainer.models.loaded_model import LoadedModel

Key: TypeAlias = "ForwardRequest"
Result: TypeAlias = "ForwardResult"
T = TypeVar("T")


class Engine(Protocol):
    """What the loader needs of an ``InferenceBackend``."""

    @property
    def model(self) -> LoadedModel: ...

    async def run(self, request: ForwardRequest) -> ForwardResult: ...


def _pass_key(request: ForwardRequest) -> PassKey:
    return (request.tokens, request.ablations, request.target)


@dataclass
class _Pass:
    request: ForwardRequest
    future: asyncio.Future[ForwardResult]
    dispatched: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ForwardLoader:
    """``await loader.load(request)``: the result of a (possibly merged) forward covering ``request``."""

    def __init__(self, engine: Engine, settle_ticks: int = 3, cache: PassCache | None = None) -> None:
        self._engine = engine
        self._settle_ticks = settle_ticks
        self._cache = cache
        self._passes: dict[PassKey, list[_Pass]] = {}
        self._waiting: list[_Pass] = []
        self._quiet = 0
        self._ticking = False
        self._tokens: dict[str, tuple[int, ...]] = {}
        self._strings: dict[tuple[int, ...], list[str]] = {}

    @property
    def model(self) -> LoadedModel:
        return self._engine.model

    def load(self, request: Key) -> Awaitable[Result]:
        key = _pass_key(request)
        passes = self._passes.setdefault(key, [])
        for p in passes:
            if not p.dispatched:
                p.request = p.request.merged(request)
                self._quiet = 0
                return asyncio.shield(p.future)
        for p in passes:
            if p.request.covers(request):
                return asyncio.shield(p.future)
        loop = asyncio.get_running_loop()
        p = _Pass(request, loop.create_future())
        passes.append(p)
        self._waiting.append(p)
        self._quiet = 0
        if not self._ticking:
            self._ticking = True
            loop.call_soon(self._tick)
        return asyncio.shield(p.future)

    def _tick(self) -> None:
        if self._quiet < self._settle_ticks:
            self._quiet += 1
            asyncio.get_running_loop().call_soon(self._tick)
            return
        self._ticking = False
        waiting, self._waiting = self._waiting, []
        for p in waiting:
            p.dispatched = True
            cached = self._cache.find(p.request) if self._cache is not None else None
            if cached is not None:
                p.future.set_result(cached)
                continue
            if self._cache is not None:
                p.request = self._cache.widened(p.request)
            p.task = asyncio.get_running_loop().create_task(self._run(p))

    async def _run(self, p: _Pass) -> None:
        try:
            result = await self._engine.run(p.request)
        except BaseException as exc:  # every field sharing this pass sees the same error
            if not p.future.done():
                p.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if self._cache is not None:
            self._cache.put(p.request, result)
        if not p.future.done():
            p.future.set_result(result)

    async def derived(self, request: Key, result: Result, what: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` in a thread, memoized with ``result``'s cached pass (so a repeated table is free)."""
        if self._cache is None:
            return await asyncio.to_thread(compute)
        return await self._cache.derived(request, result, what, compute)

    # ---- per-request memos: a query naming one prompt 50 times tokenizes it once ----------------
    def tokens(self, text: str, tokenize: Callable[[str], tuple[int, ...]]) -> tuple[int, ...]:
        """``tokenize(text)`` memoized for this request (``tokenize`` raises ``BadInput`` on bad prompts)."""
        found = self._tokens.get(text)
        if found is None:
            found = self._tokens[text] = tokenize(text)
        return found

    def token_strings(self, tokens: tuple[int, ...]) -> list[str]:
        found = self._strings.get(tokens)
        if found is None:
            found = self._strings[tokens] = self.model.to_str_tokens(list(tokens))
        return found
