"""Several server processes on one store (real Azurite, real server processes, the fake LLM on loopback):
a job runs once across them, any of them follows it from the store, and when its server is killed, or
stops renewing its lease, another takes it over with no gap and no duplicate in its log or its results.
Then retention and start-up on the store itself: old finished logs pruned, only unfinished jobs read.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport

from neuron_explainer.jobs.cluster import JobCluster
from neuron_explainer.jobs.clustered import ClusteredJobManager
from neuron_explainer.jobs.events import Completed, Started
from neuron_explainer.jobs.leases import Leases, lease_path
from neuron_explainer.jobs.store_log import StoreEventLog, blob_path
from neuron_explainer.storage.local import LocalStore
from tests.fake_openai import FakeOpenAI
from tests.hardening_data import data_root, list_blobs, neuron, upload
from tests.server import ServerProcess

JOB_FIELDS = "id status result { explanation score }"
SCORE = f"mutation($input: ScoreExplanationInput!) {{ scoreExplanation(input: $input) {{ {JOB_FIELDS} }} }}"
EVENTS = "__typename seq ... on JobFailed { code } ... on SequenceSimulated { index } ... on JobCompleted { score }"
JOB = f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} events {{ {EVENTS} }} }} }}"
SUBSCRIBE = f"subscription($id: ID!, $after: Int) {{ jobEvents(jobId: $id, after: $after) {{ {EVENTS} }} }}"
EXPLANATIONS = "query($id: ID!) { node(id: $id) { explanations { text score } } }"
LEASE_S = 3.0

pytestmark = pytest.mark.usefixtures("calm_fake")


@pytest.fixture(scope="module")
def pair(azurite: str, fake: tuple[FakeOpenAI, str]) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The flags and environment of servers sharing one Azurite container (each test starts its own)."""
    container = f"cluster-{uuid.uuid4().hex[:8]}"
    upload(azurite, container)
    args = ["--run_model", "False", "--data_root", data_root(azurite, container), "--neuron_method", "top-tokens"]
    args += ["--llm_api_key_env", "TEST_LLM_KEY", "--llm_base_url", fake[1], "--llm_concurrency", "1"]
    args += ["--job_lease_s", str(LEASE_S), "--shutdown_grace_s", "0.2"]
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite, "OPENAI_API_KEY": "", "TEST_LLM_KEY": "sk-test"}
    yield args, {**env, "CONTAINER": container}


def _server(pair: tuple[list[str], dict[str, str]]) -> ServerProcess:
    args, env = pair
    server = ServerProcess(args, env={k: v for k, v in env.items() if k != "CONTAINER"})
    server.start()
    return server


@pytest.fixture(scope="module")
def b(pair: tuple[list[str], dict[str, str]]) -> Iterator[ServerProcess]:
    """The server that follows (and, when the runner is lost, takes over) every test's job."""
    server = _server(pair)
    yield server
    server.stop()


def _score(server: ServerProcess, node: str, text: str, sequences: int) -> dict[str, Any]:
    body = server.query(SCORE, {"input": {"nodeId": node, "explanation": text, "method": "BASELINE",
                                          "maxSequences": sequences}})  # fmt: skip
    assert "errors" not in body, body
    job: dict[str, Any] = body["data"]["scoreExplanation"]
    return job


async def _follow(server: ServerProcess, job_id: str, seen: list[dict[str, Any]]) -> None:
    transport = WebsocketsTransport(url=server.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=transport, execute_timeout=120) as session:
        async for r in session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"id": job_id})):
            seen.append(r["jobEvents"])


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def _stored_log(azurite: str, container: str, job_id: str) -> list[dict[str, Any]]:
    data = list_blobs(azurite, container, blob_path(job_id))[blob_path(job_id)]
    return [json.loads(line) for line in data.decode().splitlines()[1:]]


def _check_one_clean_log(events: list[dict[str, Any]]) -> None:
    """Every seq once, in order; exactly one JobCompleted, last."""
    assert [e["seq"] for e in events] == list(range(len(events))), events
    assert [e["__typename"] for e in events].count("JobCompleted") == 1 and events[-1]["__typename"] == "JobCompleted"


async def test_a_job_started_through_one_server_is_followed_to_completion_through_another(
    pair: tuple[list[str], dict[str, str]], fake: tuple[FakeOpenAI, str], b: ServerProcess
) -> None:
    fake[0].latency_s = 0.15
    a = _server(pair)
    try:
        job = _score(a, neuron(20), "cats on mats", 6)
        seen: list[dict[str, Any]] = []
        follower = asyncio.create_task(_follow(b, job["id"], seen))
        # Asking the other server for the same inputs gives the same job: it runs once, where it started.
        again = _score(b, neuron(20), "cats on mats", 6)
        assert again["id"] == job["id"] and again["status"] in ("QUEUED", "RUNNING")
        await asyncio.wait_for(follower, 60)
        _check_one_clean_log(seen)
        assert [e["__typename"] for e in seen].count("JobStarted") == 1  # one run, on one server
        on_a = a.query(JOB, {"id": job["id"]})["data"]["job"]
        on_b = b.query(JOB, {"id": job["id"]})["data"]["job"]
        assert on_a["status"] == on_b["status"] == "COMPLETED" and on_a["events"] == on_b["events"] == seen
        assert on_a["result"] == on_b["result"]
    finally:
        a.stop()


async def test_the_same_job_asked_for_at_once_is_one_job(b: ServerProcess) -> None:
    """Twelve clients ask one server for one score at the same moment: every one gets the same job (the
    second ask used to create a second job with that id, whose claim found this process's own log and
    answered INTERNAL_SERVER_ERROR; bench/load.py hit it)."""
    body = {"query": SCORE, "variables": {"input": {"nodeId": neuron(23), "explanation": "all at once",
                                                    "method": "BASELINE", "maxSequences": 2}}}  # fmt: skip
    async with httpx.AsyncClient(base_url=b.url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/graphql", json=body) for _ in range(12)))
    bodies = [a.json() for a in answers]
    assert all("errors" not in r for r in bodies), [r["errors"] for r in bodies if "errors" in r]
    assert len({r["data"]["scoreExplanation"]["id"] for r in bodies}) == 1


@pytest.mark.parametrize("how", ["killed", "frozen"])
async def test_the_runner_lost_hands_the_job_over_with_no_gap_and_no_duplicate(
    pair: tuple[list[str], dict[str, str]], fake: tuple[FakeOpenAI, str], azurite: str, how: str, b: ServerProcess
) -> None:
    """``killed``: SIGKILL; the other server on this host sees the holder's process is gone and takes the job
    at its next beat. ``frozen``: SIGSTOP, so the lease goes unrenewed while the process lives; the other
    takes over after the lease's ttl, and the frozen one, thawed, finds its lease taken and stands down."""
    fake[0].latency_s = 0.3
    container = pair[1]["CONTAINER"]
    a = _server(pair)
    node, text = neuron(21 if how == "killed" else 22), f"dogs in fog ({how})"
    try:
        job = _score(a, node, text, 10)
        seen: list[dict[str, Any]] = []
        follower = asyncio.create_task(_follow(b, job["id"], seen))
        await _until(lambda: sum(e["__typename"] == "SequenceSimulated" for e in seen) >= 2, 30)
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        stopped = time.monotonic()
        await asyncio.wait_for(follower, 90)
        if how == "frozen":
            assert time.monotonic() - stopped >= LEASE_S  # nobody took it before the lease ran out
            os.kill(a.proc.pid, signal.SIGCONT)
            time.sleep(2 * LEASE_S / 3 + 1)  # a beat of the thawed server
        _check_one_clean_log(seen)
        kinds = [e["__typename"] for e in seen]
        stop = kinds.index("JobFailed")  # the takeover's interruption, then the resumed run
        assert seen[stop]["code"] == "INTERRUPTED" and kinds[stop + 1] == "JobStarted" and kinds.count("JobFailed") == 1
        stored = _stored_log(azurite, container, job["id"])
        assert [e["seq"] for e in stored] == [e["seq"] for e in seen]  # the store holds what was followed
        shown = b.query(EXPLANATIONS, {"id": node})["data"]["node"]["explanations"]
        assert [e["text"] for e in shown].count(text) == 1  # one result row
        assert list_blobs(azurite, container, lease_path(job["id"])) == {}  # finished: no lease left
        if how == "frozen":
            on_a = a.query(JOB, {"id": job["id"]})["data"]["job"]  # the thawed server now follows the store
            assert on_a["status"] == "COMPLETED" and on_a["events"] == seen
            assert "taken over by another server" in a.log_path.read_text()
    finally:
        if a.proc is not None and a.proc.poll() is None:
            os.kill(a.proc.pid, signal.SIGCONT)
        a.stop()


# ---- retention and start-up, on the store itself ------------------------------------------------
HEADER = {"spec": {"kind": "score", "node": "tiny-gpt2/mlp_neuron/0/1", "method": "token-lookup"}, "run": 1}


async def _finished(log: StoreEventLog, job_id: str) -> None:
    await log.describe(job_id, HEADER)
    await log.append(job_id, Started())
    await log.append(job_id, Completed("cats", 0.5))


class _CountingStore(LocalStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: list[str] = []

    async def get(self, path: str) -> bytes | None:
        self.read.append(path)
        return await super().get(path)


async def test_finished_logs_are_pruned_by_age_and_count_and_unfinished_never(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    log = StoreEventLog(store)
    for i in range(6):
        await _finished(log, f"{i:024x}")
    await log.describe("f" * 24, HEADER)  # unfinished: it has a lease
    await store.put(lease_path("f" * 24), b'{"server": null}')
    old = time.time() - 3 * 86400
    for i in (0, 1):  # two old ones
        os.utime(tmp_path / blob_path(f"{i:024x}"), (old, old))
        os.utime(tmp_path / blob_path("f" * 24), (old, old))
    cluster = JobCluster(log, Leases(store), keep_s=86400.0, keep_count=3)
    assert await cluster.prune() == 3  # 2 by age, then 1 more beyond the 3 newest finished
    left = sorted(p for p in await store.list("_jobs/") if p.endswith(".jsonl"))
    assert len(left) == 4 and blob_path("f" * 24) in left


async def test_start_up_reads_only_the_jobs_it_takes_back(tmp_path: Path, fake: tuple[FakeOpenAI, str]) -> None:
    """100 finished jobs and one released by a shut-down server: a starting manager reads the lease list,
    that one lease and that one log, and takes the job back; a finished one is read when asked for."""
    writer = StoreEventLog(LocalStore(tmp_path))
    for i in range(100):
        await _finished(writer, f"{i:024x}")
    await writer.describe("e" * 24, HEADER)
    await writer.append("e" * 24, Started())
    await LocalStore(tmp_path).put(lease_path("e" * 24), json.dumps({"server": None, "ttl_s": 15}).encode())
    store = _CountingStore(tmp_path)
    cluster = JobCluster(StoreEventLog(store), Leases(store), keep_s=0, keep_count=0)

    async def no_record(node: Any) -> Any:
        raise AssertionError("not resumed in this test")

    from neuron_explainer.explanations.methods import MethodRegistry

    manager = ClusteredJobManager(MethodRegistry(None), no_record, cluster=cluster)
    assert await manager.restore() == 1
    assert sorted(set(store.read)) == sorted({lease_path("e" * 24), blob_path("e" * 24)})
    assert manager.get("e" * 24).status.value == "interrupted"
    found = await manager.find(f"{7:024x}")
    assert found.status.value == "completed" and found.result is not None
    await manager.close()


async def test_stores_delete_and_list_modification_times(store: Any) -> None:
    """What pruning needs of both stores (folder and Azurite): times from the listing, deletes of blobs."""
    before = time.time() - 5
    await store.put("_jobs/a.jsonl", b"a")
    await store.put("_jobs/leases/a", b"{}")
    times = dict(await store.list_times("_jobs/"))
    assert sorted(times) == ["_jobs/a.jsonl", "_jobs/leases/a"] and all(t >= before for t in times.values())
    await store.delete("_jobs/a.jsonl")
    await store.delete("_jobs/never-was")  # missing: not an error
    assert await store.list("_jobs/") == ["_jobs/leases/a"] and await store.get("_jobs/a.jsonl") is None
    await store.put("_jobs/a.jsonl", b"b", if_match="")  # gone means gone: create-only works again
