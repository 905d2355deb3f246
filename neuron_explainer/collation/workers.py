"""Per-group collation work on a few threads, each with one torch intra-op thread.

A batch's work per node group (extract its values from the captured hooks, update its accumulator) is
independent of every other group's and made of many small tensor ops on a few MB each. Torch's own
intra-op threads cost more in hand-offs than they save on such ops (on a loaded 2-core box one
``[3072, 96]`` ``cat`` took 0.17 ms on one thread and 22 ms on two), so instead each group runs on one
thread and the groups run side by side on as many threads as the caller's torch thread count — the
cores a forward would use. Results do not depend on it: the accumulators' bookkeeping is integer, and
their float32 sums were checked bit-equal on one and two threads.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")

_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Torch intra-op threads off on the calling thread for the duration (the setting is per thread)."""
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_all(tasks: Sequence[Callable[[], T]]) -> list[T]:
    """Each task's result, in order; tasks run side by side, each on one torch thread, without autograd.

    Give the biggest tasks first: they are started in order. The threads are kept for the process, so
    per-thread scratch buffers survive between batches."""

    def run(task: Callable[[], T]) -> T:
        with one_thread(), torch.no_grad():
            return task()

    workers = min(torch.get_num_threads(), len(tasks))
    if workers <= 1:
        return [run(task) for task in tasks]
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="collate")
        pool = _POOLS[workers]
    return [future.result() for future in [pool.submit(run, task) for task in tasks]]
