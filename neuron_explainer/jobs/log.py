"""The event log behind every job: append-only per job, replayed and followed by subscribers.

An interface so a shared broker (e.g. Redis streams) can replace the in-memory log and let several
server replicas serve one job's subscription. ``follow`` replays the events after ``after`` and
then waits for new ones, ending after the terminal event; no event appended in between is missed.
An interruption (``Failed(code=INTERRUPTED)``) is terminal only while it is the last event: a resumed
job appends after it. ``describe`` stores what the job was (its inputs) next to its events, so a log
that outlives the process (``StoreEventLog``) can give the jobs back with ``stored_jobs``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from neuron_explainer.jobs.events import JobEvent, is_interruption, is_terminal


@dataclass(frozen=True, slots=True)
class StoredJob:
    job_id: str
    header: Mapping[str, Any]
    """What ``describe`` was given: the job's inputs, as JSON values."""
    events: list[JobEvent]


def ends_log(events: list[JobEvent], position: int, count: int) -> bool:
    """Whether ``events[position]`` is where a follower stops, when the first ``count`` events are visible."""
    event = events[position]
    return is_terminal(event) and not (is_interruption(event) and position + 1 < count)


class EventLog(Protocol):
    async def append(self, job_id: str, event: JobEvent) -> JobEvent:
        """Store ``event`` as the job's next; returns it with ``seq`` set."""
        ...

    def follow(self, job_id: str, after: int | None = None) -> AsyncIterator[JobEvent]:
        """Events with ``seq > after`` (all when None), then new ones as they come, up to the terminal one."""
        ...

    async def snapshot(self, job_id: str) -> list[JobEvent]: ...

    async def describe(self, job_id: str, header: Mapping[str, Any]) -> None:
        """Record the job's inputs (JSON values) before its first event."""
        ...

    async def stored_jobs(self) -> list[StoredJob]:
        """Jobs a previous process logged (empty for a log that dies with its process)."""
        ...

    async def close(self) -> None: ...


class InMemoryEventLog:
    """One list and one condition per job; everything on the event loop, so no locks beyond it."""

    def __init__(self) -> None:
        self._events: dict[str, list[JobEvent]] = {}
        self._changed: dict[str, asyncio.Condition] = {}

    def _condition(self, job_id: str) -> asyncio.Condition:
        if job_id not in self._changed:
            self._changed[job_id] = asyncio.Condition()
            self._events[job_id] = []
        return self._changed[job_id]

    async def append(self, job_id: str, event: JobEvent) -> JobEvent:
        condition = self._condition(job_id)
        async with condition:
            events = self._events[job_id]
            if events and is_terminal(events[-1]) and not is_interruption(events[-1]):
                raise RuntimeError(f"job {job_id} already ended; cannot append {type(event).__name__}")
            stored = dataclasses.replace(event, seq=len(events))
            events.append(stored)
            condition.notify_all()
        return stored

    def _ends(self, job_id: str, events: list[JobEvent], position: int, count: int) -> bool:
        """Whether a follower stops after ``events[position]`` (a log that others resume overrides it)."""
        return ends_log(events, position, count)

    def _visible(self, job_id: str) -> int:
        """How many of the job's events readers may see (all of them here; ``StoreEventLog``: those stored)."""
        return len(self._events.get(job_id, []))

    async def follow(self, job_id: str, after: int | None = None) -> AsyncIterator[JobEvent]:
        condition = self._condition(job_id)
        events = self._events[job_id]
        position = 0 if after is None else max(0, after + 1)
        while True:
            async with condition:
                end = self._visible(job_id)
                if end and self._ends(job_id, events, end - 1, end) and position >= end:
                    return  # resumed after the end: nothing more will come
                while self._visible(job_id) <= position:
                    await condition.wait()
                end = self._visible(job_id)
            for i in range(position, end):
                yield events[i]
                if self._ends(job_id, events, i, end):
                    return
            position = end

    async def snapshot(self, job_id: str) -> list[JobEvent]:
        return list(self._events.get(job_id, [])[: self._visible(job_id)])

    async def describe(self, job_id: str, header: Mapping[str, Any]) -> None:
        self._condition(job_id)

    async def stored_jobs(self) -> list[StoredJob]:
        return []

    async def close(self) -> None:
        pass

    def _restore(self, job_id: str, events: list[JobEvent]) -> None:
        """Put a stored job's events back (before anyone follows it)."""
        self._condition(job_id)
        self._events[job_id][:] = events
