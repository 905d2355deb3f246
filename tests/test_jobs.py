"""JobManager and the event log: events, replay, idempotent ids, force, failures, no-LLM methods."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput, LimitExceeded, LlmNotConfigured, NotFound
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.jobs import (
    Completed,
    ExplanationProduced,
    Failed,
    InMemoryEventLog,
    JobEvent,
    JobManager,
    JobResult,
    JobStatus,
    Progress,
    SequenceSimulated,
    Started,
)
from neuron_explainer.nodes import NodeId, NodeKind
from tests.explain_records import head_record, neuron_record, silent_record
from tests.fake_openai import CHAT, FakeOpenAI, serve

NEURON = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 0, 1)
HEAD = NodeId("tiny-gpt2", NodeKind.ATTENTION_HEAD, 0, 1)
SILENT = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 0, 2)
MISSING = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 1, 9)
RECORDS: dict[NodeId, NeuronRecord] = {NEURON: neuron_record(), HEAD: head_record(), SILENT: silent_record()}


async def load_record(node: NodeId) -> NeuronRecord:
    if node not in RECORDS:
        raise NotFound(f"no record for {node}", node=str(node))
    return RECORDS[node]


async def collect(events: AsyncIterator[JobEvent]) -> list[JobEvent]:
    return [e async for e in events]


@pytest.fixture(scope="module")
async def fake_url() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    async with serve(fake) as url:
        yield fake, url


@pytest.fixture
async def llm(fake_url: tuple[FakeOpenAI, str]) -> AsyncIterator[LlmClient]:
    fake_url[0].faults.clear()
    fake_url[0].latency_s = 0.0
    client = LlmClient(LlmSettings(api_key="k", base_url=fake_url[1], max_retries=2, backoff_initial_s=0.01))
    yield client
    await client.close()


async def test_log_follow_misses_nothing_under_concurrent_appends() -> None:
    log = InMemoryEventLog()

    async def writer() -> None:
        for i in range(200):
            await log.append("j", Progress(i, 200))
            if i % 7 == 0:
                await asyncio.sleep(0)
        await log.append("j", Completed("x", 1.0))

    async def late_reader(after: int | None, delay_steps: int) -> list[int]:
        for _ in range(delay_steps):
            await asyncio.sleep(0)
        return [e.seq async for e in log.follow("j", after)]

    writing = asyncio.create_task(writer())
    readers = [late_reader(None, 0), late_reader(None, 15), late_reader(50, 3), late_reader(150, 40)]
    results = await asyncio.gather(*readers)
    await writing
    assert results[0] == list(range(201)) and results[1] == list(range(201))
    assert results[2] == list(range(51, 201)) and results[3] == list(range(151, 201))
    assert await collect(log.follow("j", 200)) == []


async def test_no_llm_explain_then_score_end_to_end() -> None:
    manager = JobManager(MethodRegistry(llm=None), load_record)
    job = await manager.explain(NEURON, "top-tokens", score_method="token-lookup")
    events = await collect(job.events())
    assert isinstance(events[0], Started) and isinstance(events[1], ExplanationProduced)
    assert ' cat"' in events[1].text and ' dog"' in events[1].text
    simulated = [e for e in events if isinstance(e, SequenceSimulated)]
    assert sorted(e.index for e in simulated) == list(range(10))
    final = events[-1]
    assert isinstance(final, Completed) and final.score is not None and final.score > 0.9
    ordered = sorted(simulated, key=lambda e: e.index)
    recomputed = np.corrcoef([v for e in ordered for v in e.actual], [v for e in ordered for v in e.predicted])[0, 1]
    assert final.score == pytest.approx(recomputed)
    assert simulated[-1].running_score == pytest.approx(final.score)
    assert [e.seq for e in events] == list(range(len(events)))
    assert job.status is JobStatus.COMPLETED and job.result is not None and job.result.scoring_method == "token-lookup"


async def test_no_llm_head_methods() -> None:
    manager = JobManager(MethodRegistry(llm=None), load_record)
    job = await manager.explain(HEAD, "top-tokens", score_method="token-lookup")
    result = await job.wait()
    assert result is not None and result.explanation.startswith('attends to " cat"')
    assert result.score is not None and 0.8 < result.score <= 1.0


async def test_same_inputs_same_job_force_reruns() -> None:
    manager = JobManager(MethodRegistry(llm=None), load_record)
    first = await manager.score(NEURON, 'the tokens " cat"', "token-lookup")
    again = await manager.score(NEURON, 'the tokens " cat"', "token-lookup")
    assert again is first
    other = await manager.score(NEURON, 'the tokens " dog"', "token-lookup")
    assert other.id != first.id
    forced_while_running = await manager.score(NEURON, 'the tokens " cat"', "token-lookup", force=True)
    assert forced_while_running is first  # still queued: forcing returns the unfinished run
    await first.wait()
    rerun = await manager.score(NEURON, 'the tokens " cat"', "token-lookup", force=True)
    assert rerun is not first and rerun.id == f"{first.id}.2" and manager.get(rerun.id) is rerun
    assert await manager.score(NEURON, 'the tokens " cat"', "token-lookup") is rerun
    await rerun.wait()
    assert len(await collect(first.events())) == len(await collect(rerun.events()))
    with pytest.raises(NotFound):
        manager.get("nope")


async def test_bad_requests_fail_before_a_job_exists() -> None:
    manager = JobManager(MethodRegistry(llm=None), load_record)
    with pytest.raises(BadInput, match="known: baseline, all-at-once, token-lookup"):
        await manager.score(NEURON, "cats", "magic")
    with pytest.raises(BadInput, match="known: baseline, top-tokens"):
        await manager.explain(NEURON, "magic")
    with pytest.raises(BadInput, match="empty"):
        await manager.score(NEURON, "  ", "token-lookup")
    with pytest.raises(BadInput, match="maxSequences"):
        await manager.score(NEURON, "cats", "token-lookup", max_sequences=0)
    with pytest.raises(BadInput, match="never active"):
        await manager.score(SILENT, "cats", "token-lookup")
    with pytest.raises(NotFound):
        await manager.explain(MISSING, "top-tokens")
    with pytest.raises(LlmNotConfigured) as caught:
        await manager.explain(NEURON, "baseline")
    assert caught.value.code == "LLM_NOT_CONFIGURED"
    with pytest.raises(BadInput, match="does not score attention heads"):
        await manager.score(HEAD, "cats", "all-at-once")


async def test_llm_score_job_streams_and_persists(llm: LlmClient, fake_url: tuple[FakeOpenAI, str]) -> None:
    stored: list[JobResult] = []

    async def persist(result: JobResult) -> None:
        stored.append(result)

    manager = JobManager(MethodRegistry(llm, sequence_concurrency=4), load_record, persist=persist)
    fake_url[0].latency_s = 0.02
    job = await manager.score(NEURON, "cat and dog", "baseline", max_sequences=6)
    seen = []
    async for event in job.events():  # disconnect after the third event, resume with after
        seen.append(event)
        if len(seen) == 3:
            break
    seen += await collect(job.events(after=seen[-1].seq))
    assert [e.seq for e in seen] == list(range(len(seen)))
    assert sum(isinstance(e, SequenceSimulated) for e in seen) == 6
    assert [e.done for e in seen if isinstance(e, Progress)] == list(range(7))
    final = seen[-1]
    assert isinstance(final, Completed) and final.score is not None and final.score > 0.9
    assert len(stored) == 1 and stored[0].score == final.score and stored[0].scoring_method == "baseline"


async def test_malformed_replies_fail_the_job_and_store_nothing(
    llm: LlmClient, fake_url: tuple[FakeOpenAI, str]
) -> None:
    stored: list[JobResult] = []

    async def persist(result: JobResult) -> None:
        stored.append(result)

    fake_url[0].inject(CHAT, *["malformed"] * 30)
    manager = JobManager(MethodRegistry(llm, sequence_concurrency=1), load_record, persist=persist)
    job = await manager.score(NEURON, "cat", "baseline", max_sequences=2)
    events = await collect(job.events())
    fake_url[0].faults.clear()
    final = events[-1]
    assert isinstance(final, Failed) and final.code == "LLM_BAD_REPLY"
    assert not any(isinstance(e, Completed) for e in events) and stored == []
    assert job.status is JobStatus.FAILED and job.result is None
    retry = await manager.score(NEURON, "cat", "baseline", max_sequences=2)
    assert retry is not job and isinstance((await collect(retry.events()))[-1], Completed)


async def test_persist_failure_fails_the_job() -> None:
    async def persist(result: JobResult) -> None:
        raise OSError("disk full")

    manager = JobManager(MethodRegistry(llm=None), load_record, persist=persist)
    job = await manager.explain(NEURON, "top-tokens")
    final = (await collect(job.events()))[-1]
    assert isinstance(final, Failed) and final.code == "UPSTREAM_UNAVAILABLE" and "disk full" in final.message


async def test_jobs_are_bounded_and_independent_of_subscribers(
    llm: LlmClient, fake_url: tuple[FakeOpenAI, str]
) -> None:
    manager = JobManager(MethodRegistry(llm, sequence_concurrency=1), load_record, max_concurrent_jobs=2)
    fake_url[0].latency_s = 0.05
    jobs = [await manager.score(NEURON, f"cat {i}", "baseline", max_sequences=2) for i in range(4)]
    await asyncio.sleep(0.03)
    assert [j.status for j in jobs].count(JobStatus.RUNNING) == 2
    assert [j.status for j in jobs].count(JobStatus.QUEUED) == 2
    results = await asyncio.gather(*(j.wait() for j in jobs))  # nobody ever subscribed
    assert all(r is not None for r in results)
    await manager.close()


async def test_each_caller_has_a_quota_of_jobs_in_flight() -> None:
    jobs = JobManager(MethodRegistry(None), load_record, max_jobs_per_caller=3, max_concurrent_jobs=1)
    mine = [await jobs.score(NEURON, f"text {i}", "token-lookup", caller="alice") for i in range(3)]
    assert jobs.in_flight("alice") == 3
    with pytest.raises(LimitExceeded) as refused:
        await jobs.score(NEURON, "one more", "token-lookup", caller="alice")
    assert refused.value.fields["limit"] == "jobs_in_flight" and refused.value.fields["retryAfter"] > 0
    same = await jobs.score(NEURON, "text 0", "token-lookup", caller="alice")  # an existing job costs nothing
    assert same is mine[0]
    other = await jobs.score(NEURON, "bob's", "token-lookup", caller="bob")  # another caller's own quota
    await asyncio.gather(*(j.wait() for j in [*mine, other]))
    assert jobs.in_flight("alice") == 0 and jobs.in_flight("bob") == 0
    assert await (await jobs.score(NEURON, "later", "token-lookup", caller="alice")).wait() is not None
    await jobs.close()


async def test_a_resumed_scoring_job_logs_each_sequence_once() -> None:
    log = InMemoryEventLog()
    first = JobManager(MethodRegistry(None), load_record, log=log)
    job = await first.score(NEURON, "cats", "token-lookup", max_sequences=6)
    await job.wait()
    # As if the run had been interrupted after its first sequences: keep them, drop the rest of its log.
    events = await log.snapshot(job.id)
    cut = next(i for i, e in enumerate(events) if isinstance(e, SequenceSimulated)) + 2
    kept = [e for e in events[:cut]]
    log._restore(job.id, [*kept, Failed("INTERRUPTED", "stopped")])
    job.status = JobStatus.INTERRUPTED
    first._latest[job.id.split(".")[0]] = job
    resumed = await first.score(NEURON, "cats", "token-lookup", max_sequences=6)
    assert resumed is job
    await resumed.wait()
    indices = [e.index for e in await log.snapshot(job.id) if isinstance(e, SequenceSimulated)]
    assert sorted(indices) == sorted(set(indices)) and len(indices) == len(
        [e for e in events if isinstance(e, SequenceSimulated)]
    ), indices
    await first.close()
