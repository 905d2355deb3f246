"""Several server processes on one store: what the ``JobManager`` asks of the store besides its own logs.

``JobCluster`` holds the store-backed log (``StoreEventLog``) and this process's ``Leases``, and answers:
which runs of a job's inputs the store knows (``runs``), which unfinished jobs may be taken over now
(``Leases.takeable``), and which finished logs are old enough to delete (``prune``). The manager drives
it: claim before describing a new job, end the lease after the job's last event, renew and take over in
``JobManager.run_cluster``.

Retention (``prune``): finished jobs (no lease) whose log is older than ``keep_s``, and beyond the newest
``keep_count`` finished ones, are deleted; unfinished jobs are never pruned. It runs at start-up and every
``PRUNE_EVERY_S`` while the server runs.
"""

from __future__ import annotations

import logging
import re
import time

from neuron_explainer.jobs.leases import Leases
from neuron_explainer.jobs.store_log import PREFIX, StoreEventLog, blob_path

log = logging.getLogger(__name__)
PRUNE_EVERY_S = 3600.0
_RUN = re.compile(r"^(?P<key>[0-9a-f]+)(?:\.(?P<run>\d+))?$")


def run_of(job_id: str) -> int:
    """1 for ``<hash>``, n for ``<hash>.n``."""
    match = _RUN.match(job_id)
    return int(match.group("run") or 1) if match else 1


class JobCluster:
    def __init__(
        self, log: StoreEventLog, leases: Leases, *, keep_s: float = 30 * 86400.0, keep_count: int = 10_000
    ) -> None:
        if keep_s < 0 or keep_count < 0:
            raise ValueError("job log retention must be >= 0 (0: keep everything)")
        self.log, self.leases = log, leases
        self.keep_s, self.keep_count = keep_s, keep_count
        self.last_prune = 0.0

    @property
    def interval_s(self) -> float:
        """How often leases are renewed and the store searched for jobs to take over."""
        return self.leases.ttl_s / 3

    async def runs(self, key: str) -> list[str]:
        """Ids of every run of the inputs hashed ``key`` that has a log, oldest first."""
        ids = [p[len(PREFIX) : -len(".jsonl")] for p in await self.log.store.list(f"{PREFIX}{key}")]
        ids = [i for i in ids if (m := _RUN.match(i)) is not None and m.group("key") == key]
        return sorted(ids, key=run_of)

    async def prune(self) -> int:
        """Delete finished jobs' logs past the retention; returns how many."""
        self.last_prune = time.monotonic()
        if not self.keep_s and not self.keep_count:
            return 0
        open_jobs = set(await self.leases.open_jobs())
        logs = [
            (path[len(PREFIX) : -len(".jsonl")], modified)
            for path, modified in await self.log.store.list_times(PREFIX)
            if path.endswith(".jsonl") and "/" not in path[len(PREFIX) :]
        ]
        finished = sorted(((m, j) for j, m in logs if j not in open_jobs), reverse=True)  # newest first
        now = time.time()
        doomed = [j for i, (m, j) in enumerate(finished) if (self.keep_s and now - m > self.keep_s) or (
            self.keep_count and i >= self.keep_count)]  # fmt: skip
        for job_id in doomed:
            await self.log.store.delete(blob_path(job_id))
        if doomed:
            log.info("pruned %d finished job logs from %s", len(doomed), self.log.store.location)
        return len(doomed)

    def prune_due(self) -> bool:
        return time.monotonic() - self.last_prune >= PRUNE_EVERY_S
