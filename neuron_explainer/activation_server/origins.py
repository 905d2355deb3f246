"""Which browser origins may call the server: one policy for CORS and for WebSocket handshakes."""

from __future__ import annotations

import re
from collections.abc import Sequence

from neuron_explainer.settings import LOCALHOST_ORIGINS


class OriginPolicy:
    """Exact origins or regexes; none given means any localhost origin (the original server's rule)."""

    def __init__(self, origins: Sequence[str]) -> None:
        patterns = list(origins) or [LOCALHOST_ORIGINS]
        self.allow_all = "*" in patterns
        alternatives = [p if _looks_like_regex(p) else re.escape(p.rstrip("/")) for p in patterns if p != "*"]
        self.regex = "^(?:" + "|".join(alternatives) + ")$" if alternatives else "^$"
        self._compiled = re.compile(self.regex)

    def allows(self, origin: str) -> bool:
        return self.allow_all or bool(self._compiled.match(origin.rstrip("/")))


def _looks_like_regex(text: str) -> bool:
    return any(ch in text for ch in "()[]|?*+\\^$")
