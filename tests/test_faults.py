"""Faults a real server survives, each injected over real HTTP/WebSocket.

- internal errors (a bug) in a mutation and in a subscription: masked, with a request id that is in
  the server's log next to the real exception;
- the blob service down and back (Azurite stopped, then restarted on the same port with the same
  blobs): typed ``UPSTREAM_UNAVAILABLE`` meanwhile, then served again by the same server process;
- the LLM endpoint failing: retried with backoff, then the job ``failed`` with ``UPSTREAM_UNAVAILABLE``;
  asking again once it is back completes;
- SIGTERM while jobs run: they end ``INTERRUPTED`` with their events on the store, and after a restart
  they resume under the same ids, keep their old events, complete and store their results; a job that
  completed before stays completed. Then SIGKILL (no graceful shutdown): the same, from the log alone;
- an out-of-memory during inference (when the server runs a model): that request fails typed, the
  next one is served.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.azurite import AzuriteProcess
from tests.fake_openai import CHAT, FakeOpenAI
from tests.hardening_data import data_root, list_blobs, neuron, upload
from tests.server import ServerProcess, error_codes

CONTAINER = "faults"
JOB_FIELDS = "id status error { code message } result { explanation score }"
EXPLAIN = f"mutation($input: ExplainNodeInput!) {{ explainNode(input: $input) {{ {JOB_FIELDS} }} }}"
SCORE = f"mutation($input: ScoreExplanationInput!) {{ scoreExplanation(input: $input) {{ {JOB_FIELDS} }} }}"
EVENTS = "__typename seq ... on JobFailed { code } ... on ExplanationProduced { text } ... on JobCompleted { score }"
JOB = f"query($id: ID!) {{ job(id: $id) {{ {JOB_FIELDS} events {{ {EVENTS} }} }} }}"
SUBSCRIBE = f"subscription($id: ID!, $after: Int) {{ jobEvents(jobId: $id, after: $after) {{ {EVENTS} }} }}"
NODE = "query($id: ID!) { node(id: $id) { id topActivations(first: 3) { tokens } } }"
EXPLANATIONS = "query($id: ID!) { node(id: $id) { explanations { text score } } }"
LLM = ["--llm_api_key_env", "TEST_LLM_KEY", "--llm_max_retries", "2", "--llm_backoff_s", "0.05"]


pytestmark = pytest.mark.usefixtures("calm_fake")


def _env(conn: str) -> dict[str, str]:
    return {"AZURE_STORAGE_CONNECTION_STRING": conn, "OPENAI_API_KEY": "", "TEST_LLM_KEY": "sk-test"}


@pytest.fixture(scope="module")
def faulty(azurite: str, fake: tuple[FakeOpenAI, str]) -> Iterator[ServerProcess]:
    """A server whose jobs on node 7 (mutation) and node 8 (subscription) hit an injected bug."""
    upload(azurite, CONTAINER)
    faults = {"internal_node": neuron(7), "internal_follow_node": neuron(8)}
    args = ["--run_model", "False", "--data_root", data_root(azurite, CONTAINER), "--neuron_method", "top-tokens"]
    env = {**_env(azurite), "NEURON_EXPLAINER_TEST_FAULTS": json.dumps(faults)}
    with ServerProcess([*args, *LLM, "--llm_base_url", fake[1]], env=env) as server:
        yield server


def _job(server: ServerProcess, mutation: str, **fields: Any) -> dict[str, Any]:
    body = server.query(mutation, {"input": fields})
    assert "errors" not in body, body
    job: dict[str, Any] = next(iter(body["data"].values()))
    return job


def _wait_job(server: ServerProcess, job_id: str, done: tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = server.query(JOB, {"id": job_id})["data"]["job"]
        if job["status"] in done or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


# ---- internal errors --------------------------------------------------------------------------


def test_an_internal_error_in_a_mutation_is_masked_and_logged_with_its_request_id(faulty: ServerProcess) -> None:
    body = faulty.query(EXPLAIN, {"input": {"nodeId": neuron(7)}})
    assert error_codes(body) == ["INTERNAL_SERVER_ERROR"], body
    error = body["errors"][0]
    request_id = error["extensions"]["requestId"]
    assert request_id in error["message"] and "injected" not in json.dumps(body)
    time.sleep(0.2)
    lines = [line for line in faulty.log_path.read_text().splitlines() if request_id in line]
    assert any("internal error in request" in line for line in lines), faulty.log()
    assert "injected internal error explaining" in faulty.log_path.read_text()
    assert "errors" not in faulty.query(NODE, {"id": neuron(7)})  # and the server goes on


async def test_an_internal_error_in_a_subscription_is_masked_and_logged_with_its_request_id(
    faulty: ServerProcess,
) -> None:
    job = _job(faulty, EXPLAIN, nodeId=neuron(8))
    transport = WebsocketsTransport(url=faulty.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    seen: list[dict[str, Any]] = []
    async with Client(transport=transport) as session:
        with pytest.raises(TransportQueryError) as caught:
            async for result in session.subscribe(GraphQLRequest(SUBSCRIBE, variable_values={"id": job["id"]})):
                seen.append(result["jobEvents"])
    assert [e["__typename"] for e in seen] == ["JobStarted"]  # the first event, then the bug
    errors = caught.value.errors or []
    assert [e["extensions"]["code"] for e in errors] == ["INTERNAL_SERVER_ERROR"], errors
    request_id = errors[0]["extensions"]["requestId"]
    assert "injected" not in json.dumps(errors)
    time.sleep(0.2)
    log = faulty.log_path.read_text()
    assert f"internal error in request {request_id}" in log and "injected internal error following" in log


# ---- the LLM endpoint down ----------------------------------------------------------------------


def test_an_llm_endpoint_down_fails_the_job_after_retries_then_serves_again(
    faulty: ServerProcess, fake: tuple[FakeOpenAI, str]
) -> None:
    before = fake[0].count(CHAT)
    fake[0].inject(CHAT, *["500"] * 3)  # the first try and both retries
    job = _job(faulty, EXPLAIN, nodeId=neuron(9), method="BASELINE")
    failed = _wait_job(faulty, job["id"], ("FAILED", "COMPLETED"))
    assert failed["status"] == "FAILED" and failed["error"]["code"] == "UPSTREAM_UNAVAILABLE", failed
    assert failed["events"][-1] == {"__typename": "JobFailed", "seq": 1, "code": "UPSTREAM_UNAVAILABLE"}
    assert fake[0].count(CHAT) - before == 3
    again = _job(faulty, EXPLAIN, nodeId=neuron(9), method="BASELINE")  # the endpoint is back
    assert again["id"] == f"{job['id']}.2"
    done = _wait_job(faulty, again["id"], ("FAILED", "COMPLETED"))
    assert done["status"] == "COMPLETED" and done["result"]["explanation"], done


# ---- the blob service down and back ---------------------------------------------------------------


def test_blob_storage_down_is_typed_and_recovers_without_a_restart() -> None:
    azurite = AzuriteProcess(on_disk=True)
    conn = azurite.start()
    try:
        upload(conn, CONTAINER)
        args = ["--run_model", "False", "--data_root", data_root(conn, CONTAINER), "--neuron_method", "top-tokens"]
        with ServerProcess(args, env=_env(conn)) as server:
            assert "errors" not in server.query(NODE, {"id": neuron(1)})
            azurite.down()
            started = time.monotonic()
            body = server.query(NODE, {"id": neuron(2)})
            elapsed = time.monotonic() - started
            assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
            assert elapsed < 15, elapsed  # retries are bounded: no minute-long hang
            body = server.query(EXPLAIN, {"input": {"nodeId": neuron(3)}})
            assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
            assert httpx.get(f"{server.url}/health").status_code == 200
            assert "errors" not in server.query(NODE, {"id": neuron(1)})  # cached records still served
            azurite.up()
            body = server.query(NODE, {"id": neuron(2)})
            assert "errors" not in body and body["data"]["node"]["topActivations"], body
            job = _job(server, EXPLAIN, nodeId=neuron(3))
            assert _wait_job(server, job["id"], ("COMPLETED", "FAILED"))["status"] == "COMPLETED"
    finally:
        azurite.stop()


# ---- SIGTERM and SIGKILL while jobs run -------------------------------------------------------------


def _stop(server: ServerProcess, sig: signal.Signals) -> int:
    assert server.proc is not None
    server.proc.send_signal(sig)
    return server.proc.wait(timeout=30)


async def _follow(server: ServerProcess, job_id: str, after: int | None) -> list[dict[str, Any]]:
    transport = WebsocketsTransport(url=server.ws_url, subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL])
    async with Client(transport=transport) as session:
        request = GraphQLRequest(SUBSCRIBE, variable_values={"id": job_id, "after": after})
        return [r["jobEvents"] async for r in session.subscribe(request)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_jobs_interrupted_by_a_stop_resume_after_restart_and_lose_nothing(
    azurite: str, fake: tuple[FakeOpenAI, str], sig: signal.Signals
) -> None:
    container = f"resume-{sig.name.lower()}"
    upload(azurite, container)
    args = ["--run_model", "False", "--data_root", data_root(azurite, container), "--neuron_method", "top-tokens"]
    args += [*LLM, "--llm_base_url", fake[1], "--llm_concurrency", "2", "--shutdown_grace_s", "0.3"]
    fake[0].latency_s = 0.3  # 4 jobs x 6 sequences, 2 LLM calls at a time: about 4 s of work
    server = ServerProcess(args, env=_env(azurite))
    server.start()
    try:
        quick = _job(server, SCORE, nodeId=neuron(30), explanation="cat", method="TOKEN_LOOKUP")
        assert _wait_job(server, quick["id"], ("COMPLETED",))["status"] == "COMPLETED"
        texts = [f"cats and dogs {i}" for i in range(3)]
        slow = [
            _job(server, SCORE, nodeId=neuron(31 + i), explanation=t, method="BASELINE", maxSequences=6)
            for i, t in enumerate(texts)
        ]
        explain = _job(server, EXPLAIN, nodeId=neuron(35), method="BASELINE", scoreMethod="BASELINE", maxSequences=6)
        jobs = [*slow, explain]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every job has scored at least one sequence
            logs = [server.query(JOB, {"id": j["id"]})["data"]["job"]["events"] for j in jobs]
            if all(any(e["__typename"] == "SequenceSimulated" for e in log) for log in logs):
                break
            time.sleep(0.05)
        # Slow what is left, so a job still running now is still running at the stop (the wait above can
        # take long enough, on a loaded box, for all but the last job to finish first).
        fake[0].latency_s = 3.0
        before = [server.query(JOB, {"id": j["id"]})["data"]["job"]["events"] for j in jobs]
        code = _stop(server, sig)
        # uvicorn shuts down gracefully on SIGTERM and then exits by the same signal.
        assert code == -sig, server.log()
        if sig is signal.SIGTERM:
            assert "neuron_explainer.server [-] stopped" in server.log_path.read_text()  # the lifespan ended
        assert "stops writing" not in server.log_path.read_text()
    finally:
        server.stop()
    stored = list_blobs(azurite, container, "_jobs/")
    assert len([p for p in stored if p.endswith(".jsonl")]) == 5  # every job's log is on the store
    leases = {p.rsplit("/", 1)[1]: json.loads(v) for p, v in stored.items() if p.startswith("_jobs/leases/")}
    running = {j["id"] for j, old in zip(jobs, before, strict=True) if old[-1]["__typename"] != "JobCompleted"}
    assert running and set(leases) <= running  # a finished job holds no lease
    if sig is signal.SIGTERM:  # each ended on the way down: finished in the grace time, or interrupted
        ends = [stored[f"_jobs/{j['id']}.jsonl"].splitlines()[-1] for j in jobs]
        assert all(b'"code": "INTERRUPTED"' in end or b'"Completed"' in end for end in ends), (ends, server.log())
        assert any(b'"code": "INTERRUPTED"' in end for end in ends), ends
        assert leases and all(lease["server"] is None for lease in leases.values())  # released on the way down
    else:  # still held by the killed process: the next one on this host sees it is gone and takes them at once
        assert set(leases) == running and all(lease["server"] for lease in leases.values())

    fake[0].latency_s = 0.0
    with ServerProcess(args, env=_env(azurite)) as again:
        finished = [_wait_job(again, j["id"], ("COMPLETED", "FAILED")) for j in jobs]
        for job, old, new in zip(jobs, before, finished, strict=True):
            assert new["status"] == "COMPLETED", new
            events = new["events"]
            assert [e["seq"] for e in events] == list(range(len(events)))
            assert events[: len(old)] == old, (old, events, again.log())  # every event a client saw is kept
            assert events[-1]["__typename"] == "JobCompleted", (events, again.log())
            if any(e["__typename"] == "JobFailed" for e in events):  # interrupted, then resumed
                stop = next(e for e in events if e["__typename"] == "JobFailed")
                assert stop["code"] == "INTERRUPTED" and stop["seq"] >= len(old) - 1
                assert events[stop["seq"] + 1]["__typename"] == "JobStarted"
            assert sum(e["__typename"] == "ExplanationProduced" for e in events) <= 1  # not explained twice
            # A subscriber that had seen the old events picks up after them, across the restart.
            tail = await asyncio.wait_for(_follow(again, job["id"], len(old) - 1), 30)
            assert tail == events[len(old) :]
        # 0 lost: each scored explanation is stored, and the job that had completed stays completed.
        for i, text in enumerate(texts):
            shown = again.query(EXPLANATIONS, {"id": neuron(31 + i)})["data"]["node"]["explanations"]
            assert text in [e["text"] for e in shown]
        produced = finished[-1]["result"]["explanation"]
        shown = again.query(EXPLANATIONS, {"id": neuron(35)})["data"]["node"]["explanations"]
        assert produced in [e["text"] for e in shown]
        done = again.query(JOB, {"id": quick["id"]})["data"]["job"]
        assert done["status"] == "COMPLETED" and done["result"]["explanation"] == "cat"
        assert _job(again, SCORE, nodeId=neuron(30), explanation="cat", method="TOKEN_LOOKUP")["id"] == quick["id"]


# ---- out of GPU memory during inference ---------------------------------------------------------------

LIVE = "query($id: ID!, $p: String!) { node(id: $id) { activations(prompt: $p) { tokens activations } } }"


def test_an_out_of_memory_fails_that_request_and_the_next_is_served(azurite: str) -> None:
    args = ["--model_name", "tiny-gpt2", "--run_model", "True", "--data_root", data_root(azurite, CONTAINER)]
    args += ["--neuron_method", "top-tokens", "--max_request_cost", "3000"]
    env = {**_env(azurite), "NEURON_EXPLAINER_TEST_FAULTS": json.dumps({"oom_batches": 1})}
    with ServerProcess(args, env=env) as server:
        if not server.query("{ modelInfo { running } }")["data"]["modelInfo"]["running"]:
            pytest.skip("this build's server runs no model")
        variables = {"id": neuron(1), "p": "The cat sat on the mat."}
        body = server.query(LIVE, variables)
        assert error_codes(body) == ["LIMIT_EXCEEDED"], body
        assert body["errors"][0]["extensions"]["limit"] == "gpu_memory"
        body = server.query(LIVE, variables)
        assert "errors" not in body and len(body["data"]["node"]["activations"]["activations"]) == 7, body
        stats = server.query("{ engineStats { forwardCount oomCount } }")["data"]["engineStats"]
        assert stats["oomCount"] == 1 and stats["forwardCount"] == 1, stats  # the failed pass never ran
        # Live fields are priced by prompt tokens x nodes before anything runs: 40 nodes x 100 tokens.
        wide = (
            'query($p: String!) { nodes(model: "tiny-gpt2", kind: MLP_NEURON, layer: 0, first: 40) '
            "{ edges { node { activations(prompt: $p) { activations } } } } }"
        )
        body = server.query(wide, {"p": "word " * 60})
        assert error_codes(body) == ["LIMIT_EXCEEDED"], body
        assert body["errors"][0]["extensions"]["fields"]["Node.activations"] == 40 * 100
        assert (
            server.query("{ engineStats { forwardCount } }")["data"]["engineStats"]["forwardCount"]
            == stats["forwardCount"]
        )  # refused before any forward
