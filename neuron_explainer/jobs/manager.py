"""Explain and score jobs: started by a request, run as asyncio tasks whatever the subscribers do.

A job's id is a hash of its inputs (node, kind of job, method, explanation, max sequences, and the
scoring method of an explain job), so asking twice returns the same job. ``force=True`` starts a new
run of finished inputs; runs after the first get ids ``<hash>.2``, ``<hash>.3``, ... (each run keeps
its own immutable event log) and later requests return the newest run. Asking again for inputs whose
last run *failed* starts a new run: a failure is not a result worth keeping. Forcing inputs whose
run is still queued or running returns that run.

Bad requests fail before a job exists (unknown method, empty explanation, ``maxSequences`` < 1, a
node without records or never active, an LLM method without an LLM); what fails later (LLM down or
answering garbage, the store refusing the write) ends the job ``failed`` and stores nothing.
Jobs are kept in memory for the life of the server.
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
    Completed,
    ExplanationProduced,
    Failed,
    JobEvent,
    Progress,
    SequenceSimulated,
    Started,
)
from neuron_explainer.jobs.log import EventLog, InMemoryEventLog
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
    ) -> None:
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        self.methods = methods
        self.log: EventLog = log or InMemoryEventLog()
        self._load_record = load_record
        self._persist = persist
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

    async def close(self) -> None:
        """Cancel every unfinished job (they end ``failed`` with code ``CANCELLED``)."""
        tasks = [j._task for j in self._jobs.values() if j._task is not None and not j._task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _reusable(self, key: str, force: bool) -> Job | None:
        job = self._latest.get(key)
        if job is None or job.status is JobStatus.FAILED:
            return None
        if force and job.status is JobStatus.COMPLETED:
            return None
        return job

    async def _submit(
        self, spec: JobSpec, explainer: Explainer | None, scorer: Scorer | None, force: bool
    ) -> Job:
        if spec.max_sequences is not None and spec.max_sequences < 1:
            raise BadInput(
                f"maxSequences must be at least 1, got {spec.max_sequences}", argument="maxSequences"
            )
        key = spec.key()
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
        job._task = asyncio.create_task(self._run(job, record, explainer, scorer), name=f"job {job.id}")
        return job

    async def _run(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorer: Scorer | None
    ) -> None:
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
                        raise UpstreamUnavailable(
                            f"storing the result failed: {type(e).__name__}: {e}"
                        ) from e
                job.result = result
                job.status = JobStatus.COMPLETED
                await self.log.append(job.id, Completed(result.explanation, result.score))
        except NeuronExplainerError as e:
            await self._fail(job, e, Failed(e.code, e.message))
        except asyncio.CancelledError:
            await self._fail(job, None, Failed("CANCELLED", "the server stopped before the job ended"))
            raise
        except Exception:
            logger.exception("job %s failed", job.id)
            await self._fail(
                job, None, Failed("INTERNAL_SERVER_ERROR", "internal error (logged on the server)")
            )

    async def _fail(self, job: Job, error: NeuronExplainerError | None, event: Failed) -> None:
        job.status = JobStatus.FAILED
        job.error = error
        await self.log.append(job.id, event)

    async def _work(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorer: Scorer | None
    ) -> JobResult:
        spec = job.spec
        if explainer is not None:
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

        async def on_sequence(outcome: SequenceOutcome) -> None:
            nonlocal done
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

        outcome = await scorer.score(
            explanation, record, max_sequences=spec.max_sequences, on_sequence=on_sequence
        )
        scoring_method = spec.score_method if spec.kind is JobKind.EXPLAIN else spec.method
        return JobResult(spec, explanation, outcome.score, outcome.scored, scoring_method)
