"""The one JSON object an LLM reply carries, read as the scorers ask for it."""

from __future__ import annotations

import json
from typing import Any


def list_in_reply(text: str, key: str, n: int, per: str) -> list[Any]:
    """The list under ``key`` in the reply's JSON object (the text from its first ``{`` to its last
    ``}``: models wrap it in prose or code fences), which must hold ``n`` entries, one per ``per``;
    otherwise ``ValueError`` saying what is wrong, in words the re-ask prompt can quote."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the reply")
    try:
        data = json.loads(text[start : end + 1])
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid JSON ({e.msg})") from e
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f'no "{key}" list')
    if len(entries) != n:
        raise ValueError(f"{len(entries)} {key} for {n} {per}")
    return entries
