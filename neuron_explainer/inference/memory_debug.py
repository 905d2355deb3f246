"""``--cuda_memory_debugging``: record CUDA allocation history and dump snapshots, as the seed did.

View a dump with PyTorch's ``torch/cuda/_memory_viz.py trace_plot <file> -o snapshot.html``.
On a machine without CUDA both functions do nothing useful and say so instead of failing.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def start_memory_recording(max_entries: int = 100_000) -> bool:
    """Start recording allocation history; ``False`` (and a warning) when CUDA is unavailable."""
    if not torch.cuda.is_available():
        log.warning("--cuda_memory_debugging ignored: CUDA is not available")
        return False
    torch.cuda.memory._record_memory_history(max_entries=max_entries)
    return True


def dump_memory_snapshot(folder: Path = Path(".")) -> Path | None:
    """Write ``torch_memory_snapshot_{unix time}.pkl`` into ``folder``; ``None`` without CUDA."""
    if not torch.cuda.is_available():
        return None
    path = folder / f"torch_memory_snapshot_{time.time():.0f}.pkl"
    torch.cuda.memory._dump_snapshot(str(path))
    return path
