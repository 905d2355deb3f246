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
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from neuron_explainer.jobs.events import (
    Completed,
    ExplanationProduced,
    Failed,
    JobEvent,
    Progress,
    SequenceSimulated,
    Started,
    is_terminal,
)
from neuron_explainer.jobs.log import InMemoryEventLog, StoredJob
from neuron_explainer.storage.base import BlobStore, PreconditionFailed

log = logging.getLogger(__name__)
PREFIX = "_jobs/"
_GAVE_UP = 1 << 62
RETRY_AFTER_S = 30.0
"""After a failed write, appends stay in memory only for this long before writing is tried again."""
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


class StoreEventLog(InMemoryEventLog):
    def __init__(self, store: BlobStore) -> None:
        super().__init__()
        self.store = store
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
        stored = await super().append(job_id, event)
        if is_terminal(stored) or isinstance(stored, Started | ExplanationProduced):
            await self._write(job_id)
        else:
            task = self._behind.get(job_id)
            if task is None or task.done():
                self._behind[job_id] = asyncio.create_task(self._write_behind(job_id), name=f"log {job_id}")
        return stored

    def _visible(self, job_id: str) -> int:
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
                try:
                    etag = await self.store.put(blob_path(job_id), data, if_match=self._etags.get(job_id))
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

    async def close(self) -> None:
        """One last try to write every job whose newest events are not on the store yet."""
        await asyncio.gather(*self._behind.values(), return_exceptions=True)
        self._paused_until = 0.0
        for job_id in list(self._events):
            if self._written.get(job_id, -1) < len(self._events[job_id]) and job_id in self._headers:
                await self._write(job_id)

    async def stored_jobs(self) -> list[StoredJob]:
        """Every job under ``_jobs/``, read back into memory (unreadable blobs are logged and skipped)."""
        paths = [p for p in await self.store.list(PREFIX) if p.endswith(".jsonl")]
        semaphore = asyncio.Semaphore(16)

        async def load(path: str) -> StoredJob | None:
            async with semaphore:
                got = await self.store.get_with_etag(path)
            if got is None:
                return None
            data, etag = got
            try:
                rows = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
                job_id = str(rows[0]["job"])
                header = rows[0].get("header") or {}
                events = [event_from_json(r) for r in rows[1:]]
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                log.error("skipping unreadable job log %s: %s", path, exc)
                return None
            events = [dataclasses.replace(e, seq=i) for i, e in enumerate(events)]
            self._restore(job_id, events)
            self._headers[job_id] = header
            self._etags[job_id] = etag
            self._written[job_id] = len(events)
            return StoredJob(job_id, header, events)

        loaded = await asyncio.gather(*(load(p) for p in paths))
        return [j for j in loaded if j is not None]
