"""Counting prompt tokens for the explainer's context budget.

With ``tiktoken`` installed and able to load the encoding of the explainer model (``o200k_base`` for
gpt-4o, ``cl100k_base`` for gpt-4, ...; tiktoken downloads it once, then reads its cache), the count is
exact. Otherwise it is a bound that never under-counts: the UTF-8 byte length, since every BPE token of
these byte-level tokenizers covers at least one byte. (The 4-characters-a-token rule of thumb this
replaces counted 724 for a 1,219-token prompt, and a prompt over budget fails at the endpoint.)
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)
LOAD_TIMEOUT_S = 10.0
"""How long a first load of a tiktoken encoding may take (it may try to download it) before we use the bound."""


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class Utf8BytesBound:
    """An upper bound on any byte-level BPE count: one token per UTF-8 byte at most."""

    name = "utf8-bytes-bound"

    def count(self, text: str) -> int:
        return len(text.encode("utf-8", "surrogatepass"))


class TiktokenCounter:
    def __init__(self, encoding: Any) -> None:
        self.encoding = encoding
        self.name = f"tiktoken:{encoding.name}"

    def count(self, text: str) -> int:
        return len(self.encoding.encode(text, disallowed_special=()))


def _load_tiktoken(model: str) -> TokenCounter:
    import tiktoken  # type: ignore[import-not-found]

    try:
        encoding = tiktoken.encoding_for_model(model)
    except KeyError:
        encoding = tiktoken.get_encoding("o200k_base")  # an unknown (e.g. self-hosted) model: the newest family
    return TiktokenCounter(encoding)


async def counter_for(model: str) -> TokenCounter:
    """The exact counter for ``model`` when tiktoken can load it (in a thread, bounded), else the bound."""
    if importlib.util.find_spec("tiktoken") is None:
        return Utf8BytesBound()
    try:
        return await asyncio.wait_for(asyncio.to_thread(_load_tiktoken, model), LOAD_TIMEOUT_S)
    except Exception as e:  # offline without a cached encoding, or a tiktoken error: never fail the explanation
        log.warning("tiktoken could not load an encoding for %s (%s); counting prompt tokens as UTF-8 bytes", model, e)
        return Utf8BytesBound()
