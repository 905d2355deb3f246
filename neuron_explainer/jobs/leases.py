"""Which server runs a job when several share one store: a claim, a lease its holder renews, a takeover.

A job that is not finished has a lease blob ``_jobs/leases/{job_id}`` next to its log: JSON naming its
holder (``server``: host/pid/nonce of the process, with its host, pid namespace and pid), a ``beat`` the
holder counts up, and the ``ttl_s`` it promised to renew within. The protocol, all writes conditional:

- **claim**: a create-only write (``if_match=""``) of the lease; exactly one server's succeeds, and only
  that server writes the job's log (``StoreEventLog``'s own ETag chain) and runs it;
- **renew**: the holder rewrites it every ``ttl_s / 3`` with ``if_match`` = its last ETag; a renewal
  that fails on the ETag means another server took the job over, and the holder stops running it;
- **release**: at a clean shutdown the holder writes ``server: null`` (the job is interrupted, and any
  server may take it at once); **end**: once a job's last event is on the store its lease is deleted;
- **takeover**: a server that finds a lease released, or held by a process on its own host and pid
  namespace that no longer exists (a restart after a kill), or whose ETag it has seen unchanged for
  ``ttl_s`` by *its own* clock (no two machines' clocks are ever compared), writes itself in with
  ``if_match`` = the ETag it saw; one takeover wins.

Listing ``_jobs/leases/`` is listing the unfinished jobs, so a server starting up reads only those.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from neuron_explainer.storage.base import BlobStore, PreconditionFailed

log = logging.getLogger(__name__)
LEASES = "_jobs/leases/"


def lease_path(job_id: str) -> str:
    return f"{LEASES}{job_id}"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:  # not Linux: no process is ever judged dead from here
        return ""


@dataclass(frozen=True)
class Holder:
    """A server process, as a lease names it."""

    server: str
    host: str
    pidns: str
    pid: int

    @classmethod
    def this_process(cls) -> Holder:
        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}/{pid}/{uuid.uuid4().hex[:8]}", host, _pid_namespace(), pid)

    def gone(self, me: Holder) -> bool:
        """Whether this process certainly no longer runs, as ``me`` sees it from its host and pid namespace."""
        if not self.pidns or (self.host, self.pidns) != (me.host, me.pidns):
            return False
        if self.pid == me.pid:
            return self.server != me.server  # an earlier life of this very pid
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's process of that pid: alive
            return False
        return False


@dataclass
class _Seen:
    etag: str
    since: float
    """``time.monotonic()`` when this process first saw the lease at this ETag."""
    holder: Holder | None


class Leases:
    """This process's leases on one store (see the module docstring)."""

    def __init__(self, store: BlobStore, ttl_s: float = 15.0, holder: Holder | None = None) -> None:
        if ttl_s <= 0:
            raise ValueError(f"a lease's ttl must be positive, got {ttl_s}")
        self.store, self.ttl_s = store, ttl_s
        self.holder = holder or Holder.this_process()
        self._held: dict[str, tuple[str, int]] = {}
        """job id -> (ETag of our last write, beat)."""
        self._seen: dict[str, _Seen] = {}

    def holds(self, job_id: str) -> bool:
        return job_id in self._held

    @property
    def held(self) -> list[str]:
        return list(self._held)

    def _blob(self, beat: int, holder: Holder | None) -> bytes:
        body: dict[str, Any] = {"server": None, "beat": beat, "ttl_s": self.ttl_s}
        if holder is not None:
            body.update(dataclasses.asdict(holder))
        else:
            body["released_by"] = self.holder.server
        body["at"] = datetime.now(UTC).isoformat(timespec="seconds")  # for people reading the store
        return json.dumps(body).encode()

    async def claim(self, job_id: str) -> bool:
        """The create-only write: True when this process now holds the (new) job."""
        try:
            etag = await self.store.put(lease_path(job_id), self._blob(0, self.holder), if_match="")
        except PreconditionFailed:
            return False
        self._held[job_id] = (etag, 0)
        return True

    async def renew(self) -> list[str]:
        """Renew every lease held; returns the jobs whose lease another server took (no longer held)."""
        lost = []
        for job_id, (etag, beat) in list(self._held.items()):
            try:
                new = await self.store.put(lease_path(job_id), self._blob(beat + 1, self.holder), if_match=etag)
            except PreconditionFailed:
                lost.append(job_id)
                self._held.pop(job_id, None)
                continue
            except Exception as exc:  # the store is down: nobody can take the job over meanwhile either
                log.warning("could not renew the lease of job %s: %s", job_id, exc)
                continue
            if job_id in self._held:
                self._held[job_id] = (new, beat + 1)
        return lost

    async def release(self, job_id: str) -> None:
        """Give the job up (clean shutdown): any server may take it over at once."""
        held = self._held.pop(job_id, None)
        if held is None:
            return
        try:
            await self.store.put(lease_path(job_id), self._blob(held[1] + 1, None), if_match=held[0])
        except Exception as exc:  # taken meanwhile, or the store is down: others find it when it expires
            log.warning("could not release the lease of job %s: %s", job_id, exc)

    async def end(self, job_id: str) -> None:
        """The job's last event is stored: it needs no lease any more."""
        if self._held.pop(job_id, None) is None:
            return
        try:
            await self.store.delete(lease_path(job_id))
        except Exception as exc:  # a later takeover finds the log ended and deletes it then
            log.warning("could not delete the lease of finished job %s: %s", job_id, exc)

    async def open_jobs(self) -> list[str]:
        """Every job with a lease on the store: the unfinished ones."""
        return [p[len(LEASES) :] for p in await self.store.list(LEASES)]

    async def takeable(self) -> list[str]:
        """Unfinished jobs this process may take over now (and remembers how it saw each lease)."""
        found = []
        ids = [j for j in await self.open_jobs() if j not in self._held]
        for job_id in ids:
            got = await self.store.get_with_etag(lease_path(job_id))
            if got is None:
                self._seen.pop(job_id, None)
                continue
            data, etag = got
            holder = _holder(data)
            seen = self._seen.get(job_id)
            if seen is None or seen.etag != etag:
                seen = self._seen[job_id] = _Seen(etag, time.monotonic(), holder)
            if holder is None or holder.gone(self.holder) or time.monotonic() - seen.since >= _ttl(data, self.ttl_s):
                found.append(job_id)
        for job_id in set(self._seen) - set(ids):
            del self._seen[job_id]
        return found

    async def take(self, job_id: str) -> bool:
        """Write this process in over the lease as ``takeable`` saw it; False when another server was first."""
        seen = self._seen.pop(job_id, None)
        if seen is None:
            return False
        try:
            etag = await self.store.put(lease_path(job_id), self._blob(0, self.holder), if_match=seen.etag)
        except PreconditionFailed:
            return False
        self._held[job_id] = (etag, 0)
        who = seen.holder.server if seen.holder is not None else "nobody (released)"
        log.info("took over job %s (its lease was held by %s)", job_id, who)
        return True

    async def drop(self, job_id: str) -> None:
        """A lease left by a job that never got a log (its server stopped between the two writes)."""
        await self.store.delete(lease_path(job_id))
        self._held.pop(job_id, None)


def _holder(data: bytes) -> Holder | None:
    try:
        body = json.loads(data)
        if body.get("server") is None:
            return None
        return Holder(str(body["server"]), str(body["host"]), str(body.get("pidns", "")), int(body["pid"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable: treated as released


def _ttl(data: bytes, default: float) -> float:
    try:
        return float(json.loads(data).get("ttl_s", default))
    except (ValueError, TypeError, AttributeError):
        return default
