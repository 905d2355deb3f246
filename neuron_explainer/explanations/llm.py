"""The LLM endpoint: ``openai.AsyncOpenAI`` with our own retries, a concurrency limit and JSON mode.

Any OpenAI-protocol server works (OpenAI, Azure OpenAI, vLLM, the tests' fake). The SDK's own
retries are off: we retry 429, 5xx, timeouts and connection errors with exponential backoff and
jitter, fail at once on other 4xx (a bad key or model name does not get better by waiting), and
raise ``UpstreamUnavailable`` when the retries are spent. With no API key nothing is built:
``LlmClient.from_settings`` returns ``None`` and the method registry answers ``LlmNotConfigured``.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from openai.types import Completion
from openai.types.chat import ChatCompletion

from neuron_explainer.errors import UpstreamUnavailable

_RETRIED = (
    openai.RateLimitError,
    openai.InternalServerError,
    openai.APITimeoutError,
    openai.APIConnectionError,
)


@dataclass(frozen=True, slots=True)
class LlmSettings:
    api_key: str | None = None
    base_url: str | None = None
    """``None`` = the SDK default (api.openai.com)."""
    explainer_model: str = "gpt-4o"
    simulator_model: str = "gpt-4o"
    max_concurrency: int = 8
    """Calls in flight at once, over every job of this server."""
    timeout_s: float = 60.0
    """Per call; a slower reply counts as a timeout and is retried."""
    max_retries: int = 5
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 10.0


def _retry_after(error: Exception | None, cap: float) -> float:
    """Seconds a 429/503 asked us to wait (``Retry-After``), capped; 0 when it did not say."""
    response = getattr(error, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return min(cap, max(0.0, float(value))) if value is not None else 0.0
    except ValueError:
        return 0.0


class LlmClient:
    """One shared client per server; cheap to call from many tasks at once."""

    def __init__(self, settings: LlmSettings) -> None:
        if not settings.api_key:
            raise ValueError("LlmClient needs an api_key; use LlmClient.from_settings to get None instead")
        if settings.max_concurrency < 1 or settings.max_retries < 0 or settings.timeout_s <= 0:
            raise ValueError(f"bad LLM settings: {settings}")
        self.settings = settings
        self._client = openai.AsyncOpenAI(
            api_key=settings.api_key, base_url=settings.base_url, timeout=settings.timeout_s, max_retries=0
        )
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._json_mode_supported = True
        self.calls = 0
        """HTTP calls made, retries included (for tests and benchmarks)."""

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> LlmClient | None:
        return cls(settings) if settings.api_key else None

    async def close(self) -> None:
        await self._client.close()

    async def chat(
        self,
        messages: Sequence[dict[str, str]],
        *,
        model: str,
        max_tokens: int,
        temperature: float = 0.0,
        json_mode: bool = False,
        top_logprobs: int | None = None,
    ) -> ChatCompletion:
        """One chat completion. ``json_mode`` asks for ``response_format=json_object``; on a 400 the call is
        made again without it (the prompt still asks for JSON), and when that one succeeds the endpoint
        is remembered as having no JSON mode."""
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if top_logprobs is not None:
            kwargs.update(logprobs=True, top_logprobs=top_logprobs)
        if json_mode and self._json_mode_supported:
            try:
                return await self._call(
                    self._client.chat.completions.create, response_format={"type": "json_object"}, **kwargs
                )
            except openai.BadRequestError:
                result: ChatCompletion = await self._call(self._client.chat.completions.create, **kwargs)
                self._json_mode_supported = False
                return result
        return await self._call(self._client.chat.completions.create, **kwargs)  # type: ignore[no-any-return]

    async def complete(
        self, prompt: str, *, model: str, max_tokens: int = 0, echo: bool = True, logprobs: int = 15
    ) -> Completion:
        """A legacy ``/completions`` call, for prompt logprobs (``echo=True``, as vLLM serves them)."""
        result: Completion = await self._call(
            self._client.completions.create,
            model=model,
            prompt=prompt,
            max_tokens=max_tokens,
            echo=echo,
            logprobs=logprobs,
            temperature=0.0,
        )
        return result

    async def _call(self, create: Any, **kwargs: Any) -> Any:
        s = self.settings
        last: Exception | None = None
        for attempt in range(s.max_retries + 1):
            if attempt:
                delay = min(s.backoff_max_s, s.backoff_initial_s * 2 ** (attempt - 1))
                await asyncio.sleep(max(delay * random.uniform(0.8, 1.2), _retry_after(last, s.backoff_max_s)))
            try:
                async with self._semaphore:
                    self.calls += 1
                    return await create(**kwargs)
            except _RETRIED as e:
                last = e
            except openai.APIStatusError as e:
                if isinstance(e, openai.BadRequestError) and "response_format" in kwargs:
                    raise  # chat() retries without JSON mode
                raise UpstreamUnavailable(
                    f"LLM endpoint refused the call: {e.status_code} {e.message}",
                    status=e.status_code,
                    model=kwargs.get("model"),
                ) from e
        status = getattr(last, "status_code", None)
        raise UpstreamUnavailable(
            f"LLM endpoint failed {s.max_retries + 1} times; last error: {type(last).__name__}: {last}",
            status=status,
            model=kwargs.get("model"),
            attempts=s.max_retries + 1,
        ) from last
