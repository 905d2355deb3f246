"""``StoreEventLog`` on a folder and on Azurite: what a next process reads back, and how it treats a blob
that changed under it (its own lost write vs. another writer)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from neuron_explainer.jobs.events import INTERRUPTED, Completed, Failed, Progress, SequenceSimulated, Started
from neuron_explainer.jobs.log import InMemoryEventLog
from neuron_explainer.jobs.store_log import StoreEventLog, blob_path
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.local import LocalStore

HEADER = {"spec": {"kind": "score", "node": "tiny-gpt2/mlp_neuron/0/1", "method": "token-lookup"}, "run": 1}


@pytest.fixture(params=["folder", "azurite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "folder":
        s: BlobStore = LocalStore(tmp_path)
    else:
        s = AzureStore(f"log-{uuid.uuid4().hex[:12]}", "", connection_string=request.getfixturevalue("azurite"))
    yield s
    await s.close()


def _sim(i: int) -> SequenceSimulated:
    return SequenceSimulated(i, [" a", " cat"], [0.0, 9.5], [0.1, 8.0], 0.9, 0.8)


async def test_a_next_process_reads_every_event_back(store: BlobStore) -> None:
    log = StoreEventLog(store)
    await log.describe("j1", HEADER)
    await log.append("j1", Started())
    for i in range(5):  # written behind, coalesced
        await log.append("j1", _sim(i))
        await log.append("j1", Progress(i + 1, 5))
    await log.append("j1", Completed("cats", 0.75))
    written = log.writes
    assert 3 <= written < 13  # the header, the milestones, and far fewer than one write per event

    again = StoreEventLog(store)
    [job] = await again.stored_jobs()
    assert job.job_id == "j1" and job.header == HEADER
    assert job.events == await log.snapshot("j1")
    assert [e.seq for e in job.events] == list(range(12))
    assert [e async for e in again.follow("j1", after=9)] == job.events[10:]


async def test_an_interrupted_log_goes_on_after_the_interruption(store: BlobStore) -> None:
    log = StoreEventLog(store)
    await log.describe("j2", HEADER)
    await log.append("j2", Started())
    await log.append("j2", Failed(INTERRUPTED, "stopped"))
    await log.close()
    again = StoreEventLog(store)
    await again.stored_jobs()
    follower = asyncio.ensure_future(_collect(again, "j2"))
    await asyncio.sleep(0)
    await again.append("j2", Started())
    await again.append("j2", Completed("cats", 0.5))
    events = await asyncio.wait_for(follower, 5)
    # A follower that started before the resume stops at the interruption (it was the last event then);
    # one that starts now reads through it to the real end.
    assert [type(e).__name__ for e in events] == ["Started", "Failed"]
    later = await _collect(again, "j2")
    assert [type(e).__name__ for e in later] == ["Started", "Failed", "Started", "Completed"]
    with pytest.raises(RuntimeError):  # a real end is final
        await again.append("j2", Started())


async def _collect(log: InMemoryEventLog, job_id: str) -> list[object]:
    return [e async for e in log.follow(job_id)]


async def test_a_blob_holding_our_own_prefix_is_overwritten_and_a_foreign_one_is_left_alone(
    store: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    log = StoreEventLog(store)
    await log.describe("mine", HEADER)
    await log.append("mine", Started())
    # Our own write landed but its reply was lost (a cancelled request): the blob moved to what we wrote.
    current = await store.get(blob_path("mine"))
    assert current is not None
    await store.put(blob_path("mine"), current + b"", if_match=None)
    await log.append("mine", Completed("cats", 0.5))
    [job] = [j for j in await StoreEventLog(store).stored_jobs() if j.job_id == "mine"]
    assert [type(e).__name__ for e in job.events] == ["Started", "Completed"]

    other = StoreEventLog(store)
    await other.describe("theirs", HEADER)
    await other.append("theirs", Started())
    await store.put(
        blob_path("theirs"),
        b'{"job": "theirs", "header": {}}\n{"type": "Started", "seq": 0}\n'
        b'{"type": "Completed", "seq": 1, "explanation": "x", "score": null}\n',
        if_match=None,
    )
    with caplog.at_level(logging.ERROR):
        await other.append("theirs", Completed("dogs", 0.1))
    assert "changed by another writer" in caplog.text
    [job] = [j for j in await StoreEventLog(store).stored_jobs() if j.job_id == "theirs"]
    assert isinstance(job.events[-1], Completed) and job.events[-1].explanation == "x"  # not overwritten
