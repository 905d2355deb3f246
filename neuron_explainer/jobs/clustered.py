"""``ClusteredJobManager``: the ``JobManager`` of one of several servers sharing a store.

A job runs once across every server on the store: a new run is claimed (``Leases.claim``, a create-only
write) before its log is created, and the server that lost the claim follows the winner's job instead.
Asking for inputs (``explain``/``score``) or a job (``find``) first looks at what the store holds
(``_sync``: the newest run of those inputs), so a job started through one server is the same job through
every other, and ``jobEvents`` anywhere follows its log from the store.

``run_cluster`` (started by ``start``) renews this process's leases every ``ttl / 3``; a lease another
server took means that server runs the job now, and this one cancels its run (its log writes would fail
on the ETag anyway) and follows it instead. In the same beat it takes over jobs whose holder stopped
renewing, was killed, or released them at shutdown, and resumes them from their logs: an interruption
event, then the resumed run, in the same log (no gap, every seq once; a result stored twice replaces its
row). Start-up (``restore``) reads only the jobs it takes over; finished ones are read when asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.methods import Explainer, Scorer
from neuron_explainer.jobs.cluster import JobCluster, run_of
from neuron_explainer.jobs.events import is_interruption, is_terminal
from neuron_explainer.jobs.log import StoredJob
from neuron_explainer.jobs.manager import Job, JobManager, JobStatus

logger = logging.getLogger(__name__)
CLAIM_WAIT_S = 5.0
"""How long a server that lost a claim waits for the winner's log to appear before giving up on it."""


class ClusteredJobManager(JobManager):
    def __init__(self, *args: Any, cluster: JobCluster, **kwargs: Any) -> None:
        super().__init__(*args, log=cluster.log, **kwargs)
        self.cluster = cluster
        self._store_log = cluster.log
        self._loop: asyncio.Task[None] | None = None
        self._unresumable: dict[str, float] = {}
        """Jobs this process took over but could not resume: left to others for a while."""

    # ---- finding jobs on the store ------------------------------------------------------------
    async def find(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.watched:
            await self._follow(job_id)
        return self.get(job_id)

    async def _follow(self, job_id: str) -> Job | None:
        """The job as the store has it now, followed (not run) by this process."""
        job = self._jobs.get(job_id)
        if job is not None and job.watched:
            await self._store_log.refresh(job_id)
            stored_events = await self._store_log.snapshot(job_id)
        else:
            stored = await self._store_log.watch(job_id)
            if stored is None:
                return None
            stored_events = stored.events
        header = self._store_log.header(job_id)
        return await self._restore(StoredJob(job_id, header, stored_events), own=False)

    async def _sync(self, key: str) -> None:
        runs = await self.cluster.runs(key)
        if not runs:
            return
        newest = runs[-1]
        mine = self._latest.get(key)
        if mine is not None and not mine.watched and run_of(newest) <= mine.run:
            return
        job = await self._follow(newest)
        if job is not None and job.status is JobStatus.INTERRUPTED and not await self._store_log_open(newest):
            await self._take(newest, orphan=True)  # interrupted with no lease: nobody else will resume it

    async def _store_log_open(self, job_id: str) -> bool:
        return job_id in await self.cluster.leases.open_jobs()

    async def _claim(self, job: Job) -> Job | None:
        if await self.cluster.leases.claim(job.id):
            return None
        deadline = time.monotonic() + CLAIM_WAIT_S
        while time.monotonic() < deadline:  # the winner writes its log right after its claim
            found = await self._follow(job.id)
            if found is not None:
                return found
            await asyncio.sleep(0.1)
        raise RuntimeError(f"job {job.id} was claimed by another server, which wrote no log")

    # ---- running: the lease ends with the job ---------------------------------------------------
    def _start(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorers: list[tuple[str, Scorer]]
    ) -> None:
        async def run() -> None:
            await self._run(job, record, explainer, scorers)
            if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                await self.cluster.leases.end(job.id)

        job._task = asyncio.create_task(run(), name=f"job {job.id}")

    # ---- start-up, the beat, shutdown ---------------------------------------------------------
    async def restore(self) -> int:
        """Take over what no live server holds (released, or held by a dead process of this host) and
        prune old finished logs; everything else is read when asked for."""
        taken = 0
        for job_id in await self.cluster.leases.takeable():
            taken += await self._take(job_id, resume=False)
        with contextlib.suppress(Exception):
            await self.cluster.prune()
        return taken

    def start(self) -> None:
        """Resume what ``restore`` took, then keep the beat (renew, take over, prune) until ``close``."""
        self.resume_in_background()
        if self._loop is None or self._loop.done():
            self._loop = asyncio.create_task(self.run_cluster(), name="job leases")

    async def run_cluster(self) -> None:
        while True:
            await asyncio.sleep(self.cluster.interval_s)
            try:
                await self.beat()
            except Exception as exc:  # the store is down: try again next beat
                logger.warning("job leases on %s: %s", self._store_log.store.location, exc)

    async def beat(self) -> None:
        for job_id in await self.cluster.leases.renew():
            await self._lost(job_id)
        now = time.monotonic()
        for job_id in await self.cluster.leases.takeable():
            if self._unresumable.get(job_id, 0.0) <= now:
                await self._take(job_id)
        if self.cluster.prune_due():
            await self.cluster.prune()

    async def _take(self, job_id: str, *, orphan: bool = False, resume: bool = True) -> int:
        """Take the job over and (``resume``) run it from its log; 1 when this process now runs it."""
        leases = self.cluster.leases
        if not (await leases.claim(job_id) if orphan else await leases.take(job_id)):
            return 0
        stored = await self._store_log.adopt(job_id)
        if stored is None:  # a claim whose server stopped before writing the log
            await leases.drop(job_id)
            return 0
        if stored.events and is_terminal(stored.events[-1]) and not is_interruption(stored.events[-1]):
            await self._restore(stored)  # it ended; only its lease was left
            self._store_log.settle(job_id)
            await leases.end(job_id)
            return 0
        job = await self._restore(stored)
        if resume:
            try:
                await self._resume_job(job)
            except Exception as exc:
                logger.warning("job %s taken over but not resumable here (%s): released", job_id, exc)
                self._store_log.settle(job_id)
                self._unresumable[job_id] = time.monotonic() + 10 * self.cluster.leases.ttl_s
                await leases.release(job_id)
                return 0
        return 1

    async def _resume_job(self, job: Job) -> None:
        await self._resume(job, *self._methods_for(job.spec))

    async def _lost(self, job_id: str) -> None:
        """Another server took the job over: stop running it here and follow it from the store."""
        logger.warning("job %s was taken over by another server: this one stops running it", job_id)
        self._store_log.stop_writing(job_id)  # its run's last events (the cancellation) stay here
        job = self._jobs.get(job_id)
        if job is not None and job._task is not None and not job._task.done():
            job._task.cancel()
            await asyncio.gather(job._task, return_exceptions=True)
        self._store_log.release_to_store(job_id)
        await self._follow(job_id)

    async def resume_interrupted(self) -> list[Job]:
        resumed = await super().resume_interrupted()
        for job in self._jobs.values():  # those that stay interrupted: any server may try them
            if job.status is JobStatus.INTERRUPTED and not job.watched and self.cluster.leases.holds(job.id):
                self._store_log.settle(job.id)
                await self.cluster.leases.release(job.id)
        return resumed

    async def close(self, grace_s: float = 0.0) -> None:
        """As ``JobManager.close``; then the leases of interrupted jobs are released, so another server on
        the store takes them over at once instead of after the lease's ttl."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await super().close(grace_s)
        for job_id in self.cluster.leases.held:
            job = self._jobs.get(job_id)
            if job is not None and job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                await self.cluster.leases.end(job_id)
            else:
                await self.cluster.leases.release(job_id)
