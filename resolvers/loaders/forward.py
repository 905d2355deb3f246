"""Batches a request's forward passes: every field that needs the same prompt (with the same ablations
and loss) shares one engine call capturing the union of the hooks they asked for.

Keyed by ``ForwardRequest``; requests that are ``same_pass`` are merged (``ForwardRequest.merged``).
Not strawberry's ``DataLoader``, for two reasons: different keys must merge into one pass, and the
fields of one query reach ``load`` over several event-loop iterations (each level of nesting adds
one or two), while ``DataLoader`` dispatches two iterations after its first key. This loader waits
until ``settle_ticks`` loop iterations pass with no new ``load``, so a query asking 50 nodes'
activations on one prompt — at any depth — runs one forward. A ``load`` arriving after its pass was
dispatched reuses that pass when it already captures everything asked, else runs another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:  # torch and transformer-lens stay unimported on a server without a model
    from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult, LossConfig
    from neuron_explainer.models.loaded_model import LoadedModel

Key: TypeAlias = "ForwardRequest"
Result: TypeAlias = "ForwardResult"
PassKey: TypeAlias = "tuple[tuple[int, ...], tuple[Ablation, ...], LossConfig | None]"


class Engine(Protocol):
    """What the loader needs of an ``InferenceEngine``."""

    model: LoadedModel

    async def run(self, request: ForwardRequest) -> ForwardResult: ...


def _pass_key(request: ForwardRequest) -> PassKey:
    return (request.tokens, request.ablations, request.loss)


def _covers(ran: ForwardRequest, wanted: ForwardRequest) -> bool:
    return (
        wanted.captures <= ran.captures
        and wanted.grad_captures <= ran.grad_captures
        and (ran.lm_loss or not wanted.lm_loss)
        and (ran.needs_logits or not wanted.needs_logits)
    )


@dataclass
class _Pass:
    request: ForwardRequest
    future: asyncio.Future[ForwardResult]
    dispatched: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


class ForwardLoader:
    """``await loader.load(request)``: the result of a (possibly merged) forward covering ``request``."""

    def __init__(self, engine: Engine, settle_ticks: int = 3) -> None:
        self._engine = engine
        self._settle_ticks = settle_ticks
        self._passes: dict[PassKey, list[_Pass]] = {}
        self._waiting: list[_Pass] = []
        self._quiet = 0
        self._ticking = False
        self._tokens: dict[str, tuple[int, ...]] = {}
        self._strings: dict[tuple[int, ...], list[str]] = {}
        self.engine_calls = 0

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
            if _covers(p.request, request):
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
            p.task = asyncio.get_running_loop().create_task(self._run(p))

    async def _run(self, p: _Pass) -> None:
        self.engine_calls += 1
        try:
            result = await self._engine.run(p.request)
        except BaseException as exc:  # every field sharing this pass sees the same error
            if not p.future.done():
                p.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not p.future.done():
            p.future.set_result(result)

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
