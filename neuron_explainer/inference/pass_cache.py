"""Recent pass results kept across requests, so clicking through one prompt pays one pass.

Keyed by what determines a pass's values — (tokens, ablations, target) — and bounded by the bytes of
the tensors held (``ByteLRU``, least recently used out first). An entry answers any later request
its pass covers (same key, no more hooks than it captured); a request it does not cover runs a new
pass that also captures everything the entry did, which then replaces it, so a researcher opening
node after node on one prompt converges on one pass that answers them all. Values derived from an
entry (a node table for some k) are memoized on it. Results are shared: treat them as read-only.
Event-loop only (not thread-safe).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult
from neuron_explainer.inference.targets import Target
from neuron_explainer.storage.cache import ByteLRU

PassKey: TypeAlias = tuple[tuple[int, ...], tuple[Ablation, ...], Target | None]
T = TypeVar("T")
_MAX_DERIVED = 64
"""Derived values memoized per entry (each a table or a list: small next to the tensors)."""


def pass_key(request: ForwardRequest) -> PassKey:
    return (request.tokens, request.ablations, request.target)


@dataclass
class _Entry:
    request: ForwardRequest
    result: ForwardResult
    derived: dict[Hashable, Any] = field(default_factory=dict)


class PassCache:
    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[PassKey, _Entry] = ByteLRU(max_bytes)

    @property
    def hits(self) -> int:
        return self._lru.hits

    @property
    def bytes_used(self) -> int:
        return self._lru.bytes_used

    def find(self, request: ForwardRequest) -> ForwardResult | None:
        """A cached result that answers ``request``, or ``None``."""
        entry = self._lru.get(pass_key(request))
        if entry is None or not entry.request.covers(request):
            return None
        return entry.result

    def widened(self, request: ForwardRequest) -> ForwardRequest:
        """``request`` plus whatever the cached pass of its key captured (so its result can replace it)."""
        entry = self._lru.peek(pass_key(request))  # widening is no use of the entry
        return request.merged(entry.request) if entry is not None else request

    def put(self, request: ForwardRequest, result: ForwardResult) -> None:
        self._lru.put(pass_key(request), _Entry(request, result), result.nbytes())

    async def derived(
        self, request: ForwardRequest, result: ForwardResult, what: Hashable, compute: Callable[[], T]
    ) -> T:
        """``compute()`` (run in a thread) memoized on the cache entry holding ``result``."""
        entry = self._lru.peek(pass_key(request))
        if entry is None or entry.result is not result:
            return await asyncio.to_thread(compute)
        if what in entry.derived:
            return entry.derived[what]  # type: ignore[no-any-return]
        value = await asyncio.to_thread(compute)
        if len(entry.derived) >= _MAX_DERIVED:
            entry.derived.pop(next(iter(entry.derived)))
        entry.derived[what] = value
        return value
