"""Ending a forward pass early: the last hook a pass needs raises, so later layers never run.

Shared by live inference (``inference/forward.py``) and collation (``collation/groups.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class StopForward(Exception):
    """Raised by the last hook a pass needs, so the layers after it (and the unembedding) never run."""


def stop_hook(keep: Callable[[torch.Tensor], None] | None = None) -> Callable[..., None]:
    """A forward hook that hands its value to ``keep`` (if given) and stops the pass. Attach it last
    on its hook point, so every other hook there runs first."""

    def stop(x: torch.Tensor, hook: Any) -> None:
        if keep is not None:
            keep(x)
        raise StopForward

    return stop


def run_until_stopped(forward: Callable[[], object], where: str) -> None:
    """Run ``forward`` (a pass with a ``stop_hook`` attached at ``where``) until that hook stops it."""
    try:
        forward()
    except StopForward:
        return
    raise RuntimeError(f"the forward pass never reached {where}")
