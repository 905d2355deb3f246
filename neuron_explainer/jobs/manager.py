"""Explain and score jobs: started by a request, run as asyncio tasks whatever the subscribers do.

A job's id is a hash of its inputs (node, kind of job, method, explanation, max sequences, and the
scoring method of an explain job), so asking twice returns the same job. ``force=True`` starts a new
run of finished inputs; runs after the first get ids ``<hash>.2``, ``<hash>.3``, ... (each run keeps
its own immutable event log) and later requests return the newest run. Asking again for inputs whose
last run *failed* starts a new run: a failure is not a result worth keeping. Forcing inputs whose
run is still queued or running returns that run.

A server shutdown (``close``) gives running jobs ``grace_s`` to finish and then stops them: they end
``INTERRUPTED`` with a ``Failed(code=INTERRUPTED)`` event. With a log that outlives the process
(``StoreEventLog``), ``restore`` gives the jobs back after a restart (a job that was running when the
process died without ``close`` is marked interrupted then); asking again for an interrupted job's
inputs -- or ``resume_interrupted`` at start-up -- resumes it under the same id, appending to the same
log, and an explain job that had already produced its explanation reuses it instead of asking again.

Bad requests fail before a job exists (unknown method, empty explanation, ``maxSequences`` < 1, a
node without records or never active, an LLM method without an LLM); what fails later (LLM down or
answering garbage, the store refusing the write) ends the job ``failed`` and stores nothing.
Jobs are kept in memory for the life of the server (and, with a store-backed log, across restarts).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput, NeuronExplainerError, NotFound, UpstreamUnavailable
from neuron_explainer.explanations.methods import Explainer, MethodRegistry, Scorer
from neuron_explainer.explanations.results import ScoredAttentionSimulation, ScoredSimulation
from neuron_explainer.explanations.scoring import SequenceOutcome
from neuron_explainer.explanations.splits import check_explainable
from neuron_explainer.jobs.events import (
    INTERRUPTED,
    Completed,
    ExplanationProduced,
    Failed,
    JobEvent,
    Progress,
    SequenceSimulated,
    Started,
    is_interruption,
)
from neuron_explainer.jobs.log import EventLog, InMemoryEventLog, StoredJob
from neuron_explainer.nodes import NodeId

logger = logging.getLogger(__name__)


class JobKind(enum.Enum):
    EXPLAIN = "explain"
    """Write an explanation (and score it when the spec names a scoring method)."""
    SCORE = "score"
    """Score a given explanation."""


class JobStatus(enum.Enum):
    QUEUED = "queued"
    """Waiting for one of the manager's job slots."""
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    """Stopped by a server shutdown before it ended; asking again (same inputs) resumes it, same id."""


@dataclass(frozen=True, slots=True)
class JobSpec:
    kind: JobKind
    node: NodeId
    method: str
    """The explanation method (explain jobs) or the scoring method (score jobs)."""
    explanation: str | None = None
    """Score jobs: the text to score."""
    max_sequences: int | None = None
    score_method: str | None = None
    """Explain jobs: also score the new explanation with this method."""

    def key(self) -> str:
        fields = [
            self.kind.value,
            str(self.node),
            self.method,
            self.explanation,
            self.max_sequences,
            self.score_method,
        ]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "node": str(self.node),
            "method": self.method,
            "explanation": self.explanation,
            "max_sequences": self.max_sequences,
            "score_method": self.score_method,
        }

    @classmethod
    def from_json(cls, row: dict[str, object], parse_node: Callable[[str], NodeId]) -> JobSpec:
        max_sequences = row.get("max_sequences")
        return cls(
            JobKind(row["kind"]),
            parse_node(str(row["node"])),
            str(row["method"]),
            None if row.get("explanation") is None else str(row["explanation"]),
            int(max_sequences) if isinstance(max_sequences, int) else None,
            None if row.get("score_method") is None else str(row["score_method"]),
        )


@dataclass(frozen=True, slots=True)
class JobResult:
    spec: JobSpec
    explanation: str
    score: float | None
    scored: ScoredSimulation | ScoredAttentionSimulation | None
    """None when the explanation was not scored."""
    scoring_method: str | None


RecordLoader = Callable[[NodeId], Awaitable[NeuronRecord]]
"""Loads a node's record (stored or live); raises NotFound when there is none."""
PersistHook = Callable[[JobResult], Awaitable[None]]
"""Stores a result (phase 2: ``RecordReader.update_explanations``); runs before ``Completed`` is sent."""


class Job:
    """A handle: ``status``, ``events(after)``, ``result`` (and ``error`` when it failed)."""

    def __init__(self, job_id: str, spec: JobSpec, run: int, log: EventLog) -> None:
        self.id = job_id
        self.spec = spec
        self.run = run
        self.status = JobStatus.QUEUED
        self.result: JobResult | None = None
        self.error: NeuronExplainerError | None = None
        self.carried_explanation: str | None = None
        """A resumed explain job: the explanation its interrupted run already produced."""
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def events(self, after: int | None = None) -> AsyncIterator[JobEvent]:
        return self._log.follow(self.id, after)

    async def wait(self) -> JobResult | None:
        """Wait until the job ends; its result, or None when it failed."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self.result


class JobManager:
    def __init__(
        self,
        methods: MethodRegistry,
        load_record: RecordLoader,
        *,
        log: EventLog | None = None,
        persist: PersistHook | None = None,
        max_concurrent_jobs: int = 4,
        parse_node: Callable[[str], NodeId] | None = None,
    ) -> None:
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        self.methods = methods
        self.log: EventLog = log or InMemoryEventLog()
        self._load_record = load_record
        self._persist = persist
        self._parse_node = parse_node or (lambda text: NodeId.parse(text, {}))
        self._slots = asyncio.Semaphore(max_concurrent_jobs)
        self._jobs: dict[str, Job] = {}
        self._latest: dict[str, Job] = {}

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", job_id=job_id)
        return job

    async def explain(
        self,
        node: NodeId,
        method: str,
        *,
        score_method: str | None = None,
        max_sequences: int | None = None,
        force: bool = False,
    ) -> Job:
        spec = JobSpec(JobKind.EXPLAIN, node, method, max_sequences=max_sequences, score_method=score_method)
        explainer = self.methods.explainer(method, node.kind)
        scorer = self.methods.scorer(score_method, node.kind) if score_method is not None else None
        return await self._submit(spec, explainer, scorer, force)

    async def score(
        self,
        node: NodeId,
        explanation: str,
        method: str,
        *,
        max_sequences: int | None = None,
        force: bool = False,
    ) -> Job:
        if not explanation.strip():
            raise BadInput("the explanation to score is empty", argument="explanation")
        spec = JobSpec(JobKind.SCORE, node, method, explanation=explanation, max_sequences=max_sequences)
        return await self._submit(spec, None, self.methods.scorer(method, node.kind), force)

    async def close(self, grace_s: float = 0.0) -> None:
        """Give unfinished jobs ``grace_s`` seconds, then stop the rest (they end ``INTERRUPTED``)."""
        tasks = [j._task for j in self._jobs.values() if j._task is not None and not j._task.done()]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        remaining = [t for t in tasks if not t.done()]
        for task in remaining:
            task.cancel()
        await asyncio.gather(*remaining, return_exceptions=True)
        await self.log.close()

    async def restore(self) -> int:
        """Take back the jobs a previous process logged; returns how many."""
        for stored in await self.log.stored_jobs():
            try:
                await self._restore(stored)
            except Exception as exc:  # one bad header must not lose the other jobs
                logger.error("could not restore job %s: %s", stored.job_id, exc)
        return len(self._jobs)

    async def _restore(self, stored: StoredJob) -> None:
        header = dict(stored.header)
        spec = JobSpec.from_json(dict(header["spec"]), self._parse_node)
        run = int(header.get("run", 1))
        job = Job(stored.job_id, spec, run, self.log)
        last = stored.events[-1] if stored.events else None
        if isinstance(last, Completed):
            job.status = JobStatus.COMPLETED
            scoring = spec.score_method if spec.kind is JobKind.EXPLAIN else spec.method
            scoring = scoring if last.score is not None else None
            job.result = JobResult(spec, last.explanation, last.score, None, scoring)
        elif isinstance(last, Failed) and not is_interruption(last):
            job.status = JobStatus.FAILED
        else:
            if last is None or not is_interruption(last):
                await self.log.append(job.id, Failed(INTERRUPTED, "the server stopped before the job ended"))
            job.status = JobStatus.INTERRUPTED
        self._jobs[job.id] = job
        previous = self._latest.get(spec.key())
        if previous is None or previous.run < run:
            self._latest[spec.key()] = job

    async def resume_interrupted(self) -> list[Job]:
        """Resume every interrupted job (the newest run of its inputs); failures to resume are logged."""
        resumed = []
        for job in [j for j in self._latest.values() if j.status is JobStatus.INTERRUPTED]:
            spec = job.spec
            try:
                if spec.kind is JobKind.EXPLAIN:
                    explainer = self.methods.explainer(spec.method, spec.node.kind)
                    score = spec.score_method
                    scorer = self.methods.scorer(score, spec.node.kind) if score is not None else None
                else:
                    explainer, scorer = None, self.methods.scorer(spec.method, spec.node.kind)
                resumed.append(await self._resume(job, explainer, scorer))
            except Exception as exc:
                logger.warning("job %s stays interrupted: %s", job.id, exc)
        return resumed

    async def _resume(self, job: Job, explainer: Explainer | None, scorer: Scorer | None) -> Job:
        record = await self._load_record(job.spec.node)
        check_explainable(record, str(job.spec.node))
        if job.status is not JobStatus.INTERRUPTED:  # another request resumed it during the load
            return job
        job.status = JobStatus.QUEUED
        job.error = None
        produced = [e for e in await self.log.snapshot(job.id) if isinstance(e, ExplanationProduced)]
        job.carried_explanation = produced[-1].text if produced and explainer is not None else None
        job._task = asyncio.create_task(self._run(job, record, explainer, scorer), name=f"job {job.id}")
        return job

    def _reusable(self, key: str, force: bool) -> Job | None:
        job = self._latest.get(key)
        if job is None or job.status is JobStatus.FAILED:
            return None
        if force and job.status is JobStatus.COMPLETED:
            return None
        return job

    async def _submit(self, spec: JobSpec, explainer: Explainer | None, scorer: Scorer | None, force: bool) -> Job:
        if spec.max_sequences is not None and spec.max_sequences < 1:
            raise BadInput(f"maxSequences must be at least 1, got {spec.max_sequences}", argument="maxSequences")
        key = spec.key()
        latest = self._latest.get(key)
        if latest is not None and latest.status is JobStatus.INTERRUPTED:
            return await self._resume(latest, explainer, scorer)
        if (job := self._reusable(key, force)) is not None:
            return job
        record = await self._load_record(spec.node)
        check_explainable(record, str(spec.node))
        if (job := self._reusable(key, force)) is not None:  # another request won the race during the load
            return job
        previous = self._latest.get(key)
        run = previous.run + 1 if previous else 1
        job = Job(key if run == 1 else f"{key}.{run}", spec, run, self.log)
        self._jobs[job.id] = job
        self._latest[key] = job
        await self.log.describe(job.id, {"spec": spec.to_json(), "run": run})
        job._task = asyncio.create_task(self._run(job, record, explainer, scorer), name=f"job {job.id}")
        return job

    async def _run(self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorer: Scorer | None) -> None:
        try:
            async with self._slots:
                job.status = JobStatus.RUNNING
                await self.log.append(job.id, Started())
                result = await self._work(job, record, explainer, scorer)
                if self._persist is not None:
                    try:
                        await self._persist(result)
                    except NeuronExplainerError:
                        raise
                    except Exception as e:
                        raise UpstreamUnavailable(f"storing the result failed: {type(e).__name__}: {e}") from e
                job.result = result
                # The event first, then the status: whoever sees COMPLETED finds JobCompleted in the log.
                await self.log.append(job.id, Completed(result.explanation, result.score))
                job.status = JobStatus.COMPLETED
        except NeuronExplainerError as e:
            await self._fail(job, e, Failed(e.code, e.message))
        except asyncio.CancelledError:
            job.status = JobStatus.INTERRUPTED
            try:
                await self.log.append(
                    job.id, Failed(INTERRUPTED, "the server stopped before the job ended; ask again to resume it")
                )
            except RuntimeError:  # stopped while storing its JobCompleted: it had ended (the log's close stores it)
                job.status = JobStatus.COMPLETED
            raise
        except Exception:
            logger.exception("job %s failed", job.id)
            await self._fail(job, None, Failed("INTERNAL_SERVER_ERROR", "internal error (logged on the server)"))

    async def _fail(self, job: Job, error: NeuronExplainerError | None, event: Failed) -> None:
        job.error = error
        await self.log.append(job.id, event)
        job.status = JobStatus.FAILED

    async def _work(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorer: Scorer | None
    ) -> JobResult:
        spec = job.spec
        if explainer is not None and job.carried_explanation is not None:
            explanation = job.carried_explanation
        elif explainer is not None:
            explanation = await explainer.explain(record)
            await self.log.append(job.id, ExplanationProduced(explanation))
        else:
            assert spec.explanation is not None
            explanation = spec.explanation
        if scorer is None:
            return JobResult(spec, explanation, None, None, None)
        total = scorer.planned_sequences(record, spec.max_sequences)
        await self.log.append(job.id, Progress(0, total))
        done = 0
        reporting = asyncio.Lock()  # a log append may wait (a store write): keep each pair together, in order

        async def on_sequence(outcome: SequenceOutcome) -> None:
            nonlocal done
            async with reporting:
                done += 1
                await self.log.append(
                    job.id,
                    SequenceSimulated(
                        outcome.index,
                        outcome.tokens,
                        outcome.predicted,
                        outcome.actual,
                        outcome.sequence_score,
                        outcome.running_score,
                    ),
                )
                await self.log.append(job.id, Progress(done, total))

        outcome = await scorer.score(explanation, record, max_sequences=spec.max_sequences, on_sequence=on_sequence)
        scoring_method = spec.score_method if spec.kind is JobKind.EXPLAIN else spec.method
        return JobResult(spec, explanation, outcome.score, outcome.scored, scoring_method)
