"""An event log that outlives the process: one JSON-lines blob per job under ``_jobs/`` in a store.

``_jobs/{job_id}.jsonl`` holds a header line (``{"job": id, "header": {...}}``, the job's inputs) and
then one line per event (``{"type": "SequenceSimulated", "seq": 3, ...fields}``). Followers are served
from memory, exactly as ``InMemoryEventLog`` does. Writes rewrite the job's whole blob. A milestone
(``describe``, ``Started``, ``ExplanationProduced`` and the terminal event) is on the store before its
``append`` returns, so the job takes no further step before it is; the many ``SequenceSimulated`` and
``Progress`` events are written behind, coalesced (at most one write in flight per job, the next one
carrying everything appended meanwhile), and ``close`` writes everything. Readers (``follow``,
``snapshot``) see only what is stored, so whatever any client has seen survives a crash, and a client
resuming with ``after: n`` never skips an event that a crash renumbered. (While the store refuses writes
they see everything: durability is lost then, and logged, but nobody waits for it.) Each write carries the ETag of the
previous one as ``if_match``: when the ETag moved, a blob holding a prefix of our own log (a write whose
reply was lost, e.g. cancelled at shutdown) is overwritten, anything else is another writer's and this
process stops writing that job, loudly. Concurrent appends of one job coalesce: a write that finds a
newer write already on the store skips itself.

A store that refuses writes (a read-only public container, or blob storage down) must not stop or slow
jobs: a failed write is logged, the log keeps working in memory, writing pauses for ``RETRY_AFTER_S``,
and the next write (or ``close``) carries every event the store missed.

Several servers on one store (``jobs.leases`` decides who writes which log): a job's first write is
create-only, so no log is ever written over by a second creator. A job another process writes is
*watched* (``watch``): its events are read from the store, and re-read every ``poll_s`` while anyone
follows it, so ``jobEvents`` on any server follows any job. A watched log whose last event is an
interruption goes on being followed while its lease exists (another server is about to resume it),
up to ``STALE_INTERRUPTION_S``. ``adopt`` turns a watched job into one this process writes (after a
takeover); until its resumed run starts, its followers here do not stop at the interruption either.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from neuron_explainer.jobs.events import (
    Completed,
    ExplanationProduced,
    Failed,
    JobEvent,
    Progress,
    SequenceSimulated,
    Started,
    is_interruption,
    is_terminal,
)
from neuron_explainer.jobs.leases import lease_path
from neuron_explainer.jobs.log import InMemoryEventLog, StoredJob, ends_log
from neuron_explainer.storage.base import BlobStore, PreconditionFailed

log = logging.getLogger(__name__)
PREFIX = "_jobs/"
_GAVE_UP = 1 << 62
RETRY_AFTER_S = 30.0
"""After a failed write, appends stay in memory only for this long before writing is tried again."""
STALE_INTERRUPTION_S = 120.0
"""A watched job interrupted this long with nobody resuming it ends its followers (it stays resumable)."""
_TYPES: dict[str, type[Any]] = {
    t.__name__: t for t in (Started, ExplanationProduced, SequenceSimulated, Progress, Completed, Failed)
}


def event_to_json(event: JobEvent) -> dict[str, Any]:
    return {"type": type(event).__name__, **dataclasses.asdict(event)}


def event_from_json(row: Mapping[str, Any]) -> JobEvent:
    kind = _TYPES.get(str(row.get("type")))
    if kind is None:
        raise ValueError(f"unknown job event type {row.get('type')!r}")
    names = {f.name for f in dataclasses.fields(kind)}
    event: JobEvent = kind(**{k: v for k, v in row.items() if k in names})
    return event


def blob_path(job_id: str) -> str:
    return f"{PREFIX}{job_id}.jsonl"


def parse_log(data: bytes) -> tuple[str, Mapping[str, Any], list[JobEvent]]:
    """``(job id, header, events)`` of a log blob, events numbered 0, 1, ...; ``ValueError`` when unreadable."""
    try:
        rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        job_id = str(rows[0]["job"])
        header = rows[0].get("header") or {}
        events = [event_from_json(r) for r in rows[1:]]
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"unreadable job log: {exc}") from exc
    return job_id, header, [dataclasses.replace(e, seq=i) for i, e in enumerate(events)]


class StoreEventLog(InMemoryEventLog):
    def __init__(self, store: BlobStore, poll_s: float = 0.5) -> None:
        super().__init__()
        self.store = store
        self.poll_s = poll_s
        self._watched: dict[str, str] = {}
        """Jobs another process writes: job id -> ETag of the log as last read."""
        self._open: dict[str, bool] = {}
        """Watched jobs: whether their lease existed at the last read (someone will go on with them)."""
        self._interrupted_at: dict[str, float] = {}
        self._resuming: set[str] = set()
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._following: dict[str, int] = {}
        self._paused_until = 0.0
        self._headers: dict[str, Mapping[str, Any]] = {}
        self._etags: dict[str, str | None] = {}
        self._written: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._behind: dict[str, asyncio.Task[None]] = {}
        self.writes = 0

    async def describe(self, job_id: str, header: Mapping[str, Any]) -> None:
        await super().describe(job_id, header)
        self._headers[job_id] = dict(header)
        self._written.setdefault(job_id, -1)
        await self._write(job_id)

    async def append(self, job_id: str, event: JobEvent) -> JobEvent:
        if job_id in self._watched:
            raise RuntimeError(f"job {job_id} is written by another server; this one only follows it")
        stored = await super().append(job_id, event)
        if isinstance(stored, Started):
            self._resuming.discard(job_id)
        if is_terminal(stored) or isinstance(stored, Started | ExplanationProduced):
            await self._write(job_id)
        else:
            task = self._behind.get(job_id)
            if task is None or task.done():
                self._behind[job_id] = asyncio.create_task(self._write_behind(job_id), name=f"log {job_id}")
        return stored

    def _own_visible(self, job_id: str) -> int:
        count = len(self._events.get(job_id, []))
        written = self._written.get(job_id, 0)
        if time.monotonic() < self._paused_until or written >= _GAVE_UP:
            return count
        return min(count, max(0, written))

    async def _published(self, job_id: str) -> None:
        condition = self._changed.get(job_id)
        if condition is not None:
            async with condition:
                condition.notify_all()

    async def _write_behind(self, job_id: str) -> None:
        while self._written.get(job_id, -1) < len(self._events.get(job_id, [])):
            if time.monotonic() < self._paused_until:
                return
            await self._write(job_id)

    async def _write(self, job_id: str) -> None:
        if time.monotonic() < self._paused_until:
            return
        lock = self._locks.setdefault(job_id, asyncio.Lock())
        async with lock:
            events = list(self._events.get(job_id, []))  # a copy: appends go on during the write
            if self._written.get(job_id, -1) >= len(events):
                return  # a later write already carried these events
            lines = [json.dumps({"job": job_id, "header": self._headers.get(job_id, {})})]
            lines += [json.dumps(event_to_json(e)) for e in events]
            data = ("\n".join(lines) + "\n").encode()
            try:
                try:  # a job's first write is create-only: a log is never written over by a second creator
                    etag = await self.store.put(blob_path(job_id), data, if_match=self._etags.get(job_id, ""))
                except PreconditionFailed:
                    etag = await self._overwrite_own(job_id, data, len(events))
            except PreconditionFailed:
                log.error("job %s: its event log was changed by another writer; this process stops writing it", job_id)
                self._written[job_id] = _GAVE_UP
                await self._published(job_id)
                return
            except Exception as exc:
                self._paused_until = time.monotonic() + RETRY_AFTER_S
                log.warning(
                    "job event logs cannot be written to %s (%s: %s); retrying in %.0f s (nothing is lost while "
                    "this process runs; the next write carries every event)",
                    self.store.location,
                    type(exc).__name__,
                    exc,
                    RETRY_AFTER_S,
                )
                await self._published(job_id)
                return
            self._etags[job_id] = etag
            self._written[job_id] = len(events)
            self.writes += 1
        await self._published(job_id)

    async def _overwrite_own(self, job_id: str, data: bytes, n_events: int) -> str:
        """The ETag moved. When the blob holds a prefix of our own log (a write of ours whose reply was
        lost, e.g. cancelled at shutdown after the store applied it), write over it; else it is someone
        else's: ``PreconditionFailed``."""
        got = await self.store.get_with_etag(blob_path(job_id))
        if got is None:
            return await self.store.put(blob_path(job_id), data, if_match="")
        current, etag = got
        lines = current.decode(errors="replace").splitlines()
        ours = data.decode().splitlines()
        if len(lines) - 1 > n_events or lines != ours[: len(lines)]:
            raise PreconditionFailed(f"{blob_path(job_id)} holds events this process did not write")
        return await self.store.put(blob_path(job_id), data, if_match=etag)

    async def stored_jobs(self, job_ids: Iterable[str] | None = None) -> list[StoredJob]:
        """The given jobs (default: every job under ``_jobs/``), read back into memory as this process's own
        to write; unreadable blobs are logged and skipped."""
        if job_ids is None:
            job_ids = [p[len(PREFIX) : -len(".jsonl")] for p in await self.store.list(PREFIX) if p.endswith(".jsonl")]
        semaphore = asyncio.Semaphore(16)

        async def load(job_id: str) -> StoredJob | None:
            async with semaphore:
                return await self.adopt(job_id, resuming=False)

        loaded = await asyncio.gather(*(load(j) for j in job_ids))
        return [j for j in loaded if j is not None]

    async def _read(self, job_id: str) -> tuple[StoredJob, str] | None:
        got = await self.store.get_with_etag(blob_path(job_id))
        if got is None:
            return None
        data, etag = got
        try:
            found, header, events = parse_log(data)
        except ValueError as exc:
            log.error("skipping unreadable job log %s: %s", blob_path(job_id), exc)
            return None
        if found != job_id:
            log.error("skipping job log %s: it names job %s", blob_path(job_id), found)
            return None
        return StoredJob(job_id, header, events), etag

    async def adopt(self, job_id: str, *, resuming: bool = True) -> StoredJob | None:
        """Read a job back as this process's own to write (after a restart or a takeover); None when it has
        no readable log. ``resuming``: its followers here do not stop at an interruption until it runs
        again (or ``settle``)."""
        read = await self._read(job_id)
        if read is None:
            return None
        stored, etag = read
        self._stop_watching(job_id)
        self._restore(job_id, stored.events)
        self._headers[job_id] = stored.header
        self._etags[job_id] = etag
        self._written[job_id] = len(stored.events)
        if resuming:
            self._resuming.add(job_id)
        await self._published(job_id)
        return stored

    def header(self, job_id: str) -> Mapping[str, Any]:
        """What ``describe`` stored for the job (its inputs), as read or written by this process."""
        return self._headers.get(job_id, {})

    def settle(self, job_id: str) -> None:
        """An adopted job will not run again after all: an interruption ends its followers again."""
        self._resuming.discard(job_id)

    # ---- jobs another process writes -------------------------------------------------------------
    def is_watched(self, job_id: str) -> bool:
        return job_id in self._watched

    async def watch(self, job_id: str) -> StoredJob | None:
        """Follow a job another process writes (or wrote); None when the store has no log of it."""
        if job_id in self._events and job_id not in self._watched:
            raise RuntimeError(f"job {job_id} is this process's own")
        read = await self._read(job_id)
        if read is None:
            return None
        stored, etag = read
        self._watched[job_id] = etag
        self._headers[job_id] = stored.header
        self._restore(job_id, stored.events)
        await self._check_open(job_id)
        return stored

    def stop_writing(self, job_id: str) -> None:
        """Another process writes this job now: nothing of ours goes to the store any more (quietly)."""
        self._written[job_id] = _GAVE_UP

    def release_to_store(self, job_id: str) -> None:
        """This process stopped writing the job (another took it over): from now on it is watched."""
        self._watched[job_id] = self._etags.pop(job_id, None) or ""
        self._written.pop(job_id, None)
        self._resuming.discard(job_id)

    async def refresh(self, job_id: str) -> None:
        """Re-read a watched job's log (and lease) if it changed; followers see the new events."""
        etag = self._watched.get(job_id)
        if etag is None:
            return
        got = await self.store.get_with_etag(blob_path(job_id))
        await self._check_open(job_id)
        if got is not None and got[1] != etag and job_id in self._watched:
            try:
                _, _, events = parse_log(got[0])
            except ValueError as exc:
                log.error("cannot follow job log %s: %s", blob_path(job_id), exc)
                return
            current = self._events[job_id]
            if events[: len(current)] != current:
                log.error("job %s: its log was rewritten under a follower; showing the new one", job_id)
            current[:] = events  # in place: followers hold this list
            self._watched[job_id] = got[1]
        await self._published(job_id)

    async def _check_open(self, job_id: str) -> None:
        self._open[job_id] = await self.store.get(lease_path(job_id)) is not None

    def _stop_watching(self, job_id: str) -> None:
        self._watched.pop(job_id, None)
        self._open.pop(job_id, None)
        task = self._pollers.pop(job_id, None)
        if task is not None:
            task.cancel()

    async def snapshot(self, job_id: str) -> list[JobEvent]:
        if job_id in self._watched:
            await self.refresh(job_id)
        return await super().snapshot(job_id)

    async def follow(self, job_id: str, after: int | None = None) -> AsyncIterator[JobEvent]:
        self._following[job_id] = self._following.get(job_id, 0) + 1
        if job_id in self._watched and job_id not in self._pollers:
            self._pollers[job_id] = asyncio.create_task(self._poll(job_id), name=f"follow {job_id}")
        try:
            async for event in super().follow(job_id, after):
                yield event
        finally:
            self._following[job_id] -= 1
            if not self._following[job_id]:
                task = self._pollers.pop(job_id, None)
                if task is not None:
                    task.cancel()

    async def _poll(self, job_id: str) -> None:
        while job_id in self._watched:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh(job_id)
            except Exception as exc:  # the store is down: followers wait, nothing is lost
                log.warning("cannot read job %s from %s: %s", job_id, self.store.location, exc)

    def _ends(self, job_id: str, events: list[JobEvent], position: int, count: int) -> bool:
        if not ends_log(events, position, count):
            return False
        if not is_interruption(events[position]):
            return True
        if job_id in self._resuming:
            return False
        if job_id in self._watched and self._open.get(job_id, False):
            first = self._interrupted_at.setdefault(f"{job_id}#{position}", time.monotonic())
            return time.monotonic() - first > STALE_INTERRUPTION_S
        return True

    def _visible(self, job_id: str) -> int:
        if job_id in self._watched:
            return len(self._events.get(job_id, []))
        return self._own_visible(job_id)

    async def close(self) -> None:
        """Stop following; one last try to write every job whose newest events are not on the store yet."""
        for task in self._pollers.values():
            task.cancel()
        await asyncio.gather(*self._behind.values(), return_exceptions=True)
        self._paused_until = 0.0
        for job_id in list(self._events):
            if job_id in self._watched:
                continue
            if self._written.get(job_id, -1) < len(self._events[job_id]) and job_id in self._headers:
                await self._write(job_id)
