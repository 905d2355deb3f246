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

A caller (an API key's hash or a client address) may have at most ``max_jobs_per_caller`` jobs queued
or running; one more is ``LimitExceeded`` (``jobs_in_flight``) with a ``retryAfter`` hint, before any
work. Asking for inputs that already have a job costs nothing. A resumed scoring job logs each
sequence once: sequences its interrupted run already logged (per method) are not logged again.

A score job may run several scoring methods at once (``methods``): one job, one event log (each
``SequenceSimulated`` names its method; ``Progress`` counts them all), one stored row per method and one
``Completed`` carrying every score. If any method fails, the job fails and nothing is stored for any.

Bad requests fail before a job exists (unknown method, an empty or repeated list of methods, empty
explanation, ``maxSequences`` < 1, a node without records or never active, too few non-activating
records for a classifier scorer, an LLM method without an LLM, the embedding method without its
model); what fails later (LLM down or answering garbage, the store refusing the write) ends the job
``failed`` and stores nothing.
Jobs are kept in memory for the life of the server (and, with a store-backed log, across restarts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput, LimitExceeded, NeuronExplainerError, NotFound, UpstreamUnavailable
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.explanations.outcomes import SequenceSimulated
from neuron_explainer.explanations.protocols import Explainer, Scorer
from neuron_explainer.explanations.splits import check_explainable
from neuron_explainer.jobs.events import (
    INTERRUPTED,
    Completed,
    ExplanationProduced,
    Failed,
    JobEvent,
    Progress,
    Started,
    is_interruption,
)
from neuron_explainer.jobs.log import EventLog, InMemoryEventLog, StoredJob
from neuron_explainer.jobs.spec import JobKind, JobResult, JobSpec, JobStatus, MethodResult
from neuron_explainer.nodes import NodeId

logger = logging.getLogger(__name__)


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
        self.carried_provenance: dict[str, object] = {}
        self.logged_sequences: set[tuple[str | None, int]] = set()
        """A resumed scoring job: (method, index) of the sequences its interrupted run already logged."""
        self.caller: str | None = None
        self._log = log
        self._task: asyncio.Task[None] | None = None
        self.watched = False
        """Written by another server on the same store; this process follows it (``ClusteredJobManager``)."""

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
        max_jobs_per_caller: int = 0,
        parse_node: Callable[[str], NodeId] | None = None,
    ) -> None:
        """``max_jobs_per_caller``: jobs one caller may have queued or running (0: no quota)."""
        if max_concurrent_jobs < 1:
            raise ValueError("max_concurrent_jobs must be at least 1")
        if max_jobs_per_caller < 0:
            raise ValueError("max_jobs_per_caller must be >= 0")
        self.max_jobs_per_caller = max_jobs_per_caller
        self._callers: dict[str, set[str]] = {}
        self.methods = methods
        self.log: EventLog = log or InMemoryEventLog()
        self._load_record = load_record
        self._persist = persist
        self._parse_node = parse_node or (lambda text: NodeId.parse(text, {}))
        self._slots = asyncio.Semaphore(max_concurrent_jobs)
        self._jobs: dict[str, Job] = {}
        self._latest: dict[str, Job] = {}
        self._submitting: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        """Per job key: one submission at a time (the lock) and how many wait for it (for clean-up)."""
        self._resuming: asyncio.Task[list[Job]] | None = None

    def status_counts(self) -> dict[JobStatus, int]:
        """How many jobs this manager knows in each status (for /metrics)."""
        counts: dict[JobStatus, int] = {}
        for job in list(self._jobs.values()):
            counts[job.status] = counts.get(job.status, 0) + 1
        return counts

    def in_flight(self, caller: str) -> int:
        """Jobs ``caller`` has queued or running."""
        return len(self._callers.get(caller, ()))

    def _take_slot(self, job: Job, caller: str | None) -> None:
        if caller is None:
            return
        mine = self._callers.setdefault(caller, set())
        if self.max_jobs_per_caller and len(mine) >= self.max_jobs_per_caller:
            raise LimitExceeded(
                f"{len(mine)} of your jobs are queued or running; at most {self.max_jobs_per_caller} per caller "
                "(retry when some have ended)",
                limit="jobs_in_flight",
                allowed=self.max_jobs_per_caller,
                retryAfter=5,
            )
        mine.add(job.id)
        job.caller = caller

    def _release_slot(self, job: Job) -> None:
        if job.caller is not None and (mine := self._callers.get(job.caller)) is not None:
            mine.discard(job.id)
            if not mine:
                del self._callers[job.caller]
        job.caller = None

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", job_id=job_id)
        return job

    async def find(self, job_id: str) -> Job:
        """``get``, and where the log outlives the process, jobs only the store knows (up to date)."""
        return self.get(job_id)

    async def explain(
        self,
        node: NodeId,
        method: str,
        *,
        score_method: str | None = None,
        max_sequences: int | None = None,
        force: bool = False,
        caller: str | None = None,
    ) -> Job:
        spec = JobSpec(JobKind.EXPLAIN, node, method, max_sequences=max_sequences, score_method=score_method)
        explainer = self.methods.explainer(method, node.kind, node)
        scorers = [(score_method, self.methods.scorer(score_method, node.kind))] if score_method is not None else []
        return await self._submit(spec, explainer, scorers, force, caller)

    async def score(
        self,
        node: NodeId,
        explanation: str,
        method: str | Sequence[str],
        *,
        max_sequences: int | None = None,
        force: bool = False,
        caller: str | None = None,
    ) -> Job:
        """Score ``explanation`` with one method, or several (a sequence of names) in one job."""
        if not explanation.strip():
            raise BadInput("the explanation to score is empty", argument="explanation")
        names = [method] if isinstance(method, str) else list(method)
        if not names:
            raise BadInput("methods is empty: name at least one scoring method", argument="methods")
        repeated = sorted({m for m in names if names.count(m) > 1})
        if repeated:
            raise BadInput(f"methods lists {', '.join(repeated)} more than once", argument="methods")
        scorers = [(m, self.methods.scorer(m, node.kind)) for m in names]
        spec = JobSpec(
            JobKind.SCORE,
            node,
            names[0],
            explanation=explanation,
            max_sequences=max_sequences,
            methods=tuple(names) if len(names) > 1 else None,
        )
        return await self._submit(spec, None, scorers, force, caller)

    async def close(self, grace_s: float = 0.0) -> None:
        """Give unfinished jobs ``grace_s`` seconds, then stop the rest (they end ``INTERRUPTED``)."""
        if self._resuming is not None and not self._resuming.done():
            self._resuming.cancel()
            await asyncio.gather(self._resuming, return_exceptions=True)
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

    async def _restore(self, stored: StoredJob, *, own: bool = True) -> Job:
        """A job of the log back in memory. ``own``: this process writes it now, and a run that did not end
        is interrupted (logged so); else it is another server's job, followed with the status its log says."""
        header = dict(stored.header)
        spec = JobSpec.from_json(dict(header["spec"]), self._parse_node)
        run = int(header.get("run", 1))
        job = self._jobs.get(stored.job_id) or Job(stored.job_id, spec, run, self.log)
        job.watched = not own
        last = stored.events[-1] if stored.events else None
        if isinstance(last, Completed):
            job.status = JobStatus.COMPLETED
            scoring = spec.scoring_methods[0] if spec.scoring_methods and last.score is not None else None
            scores = tuple(MethodResult(m, v, None) for m, v in (last.scores or {}).items())
            job.result = JobResult(spec, last.explanation, last.score, None, scoring, scores)
        elif isinstance(last, Failed) and not is_interruption(last):
            job.status = JobStatus.FAILED
        elif not own:
            running = last is not None and not is_interruption(last)
            job.status = JobStatus.RUNNING if running else JobStatus.INTERRUPTED if last else JobStatus.QUEUED
        else:
            if last is None or not is_interruption(last):
                await self.log.append(job.id, Failed(INTERRUPTED, "the server stopped before the job ended"))
            job.status = JobStatus.INTERRUPTED
        self._jobs[job.id] = job
        previous = self._latest.get(spec.key())
        if previous is None or previous.run <= run:
            self._latest[spec.key()] = job
        return job

    def resume_in_background(self) -> None:
        """Start ``resume_interrupted`` without waiting for it (start-up must not wait on record loads);
        the manager owns the task and ``close`` cancels it."""
        if self._resuming is None or self._resuming.done():
            self._resuming = asyncio.create_task(self.resume_interrupted(), name="resume jobs")

    async def resume_interrupted(self) -> list[Job]:
        """Resume every interrupted job (the newest run of its inputs); failures to resume are logged."""
        resumed = []
        for job in [j for j in self._latest.values() if j.status is JobStatus.INTERRUPTED]:
            try:
                resumed.append(await self._resume(job, *self._methods_for(job.spec)))
            except Exception as exc:
                logger.warning("job %s stays interrupted: %s", job.id, exc)
        return resumed

    def _methods_for(self, spec: JobSpec) -> tuple[Explainer | None, list[tuple[str, Scorer]]]:
        """The explainer and scorers a stored job's inputs name (to resume it)."""
        explainer = (
            self.methods.explainer(spec.method, spec.node.kind, spec.node) if spec.kind is JobKind.EXPLAIN else None
        )
        return explainer, [(m, self.methods.scorer(m, spec.node.kind)) for m in spec.scoring_methods]

    async def _resume(
        self, job: Job, explainer: Explainer | None, scorers: list[tuple[str, Scorer]], caller: str | None = None
    ) -> Job:
        record = await self._load_record(job.spec.node)
        check_explainable(record, str(job.spec.node))
        if job.status is not JobStatus.INTERRUPTED:  # another request resumed it during the load
            return job
        self._take_slot(job, caller)
        job.status = JobStatus.QUEUED
        job.error = None
        logged = await self.log.snapshot(job.id)
        job.logged_sequences = {(e.method, e.index) for e in logged if isinstance(e, SequenceSimulated)}
        produced = [e for e in logged if isinstance(e, ExplanationProduced)]
        job.carried_explanation = produced[-1].text if produced and explainer is not None else None
        job.carried_provenance = dict(produced[-1].provenance or {}) if produced else {}
        self._start(job, record, explainer, scorers)
        return job

    def _start(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorers: list[tuple[str, Scorer]]
    ) -> None:
        job._task = asyncio.create_task(self._run(job, record, explainer, scorers), name=f"job {job.id}")

    async def _sync(self, key: str) -> None:
        """Before deciding on inputs hashed ``key``: learn what other servers on the store did with them."""

    async def _claim(self, job: Job) -> Job | None:
        """Make ``job`` (a new run) this process's to run; or the job to follow instead, when another
        server claimed that run first."""
        return None

    def _reusable(self, key: str, force: bool) -> Job | None:
        job = self._latest.get(key)
        if job is None or job.status is JobStatus.FAILED:
            return None
        if force and job.status is JobStatus.COMPLETED:
            return None
        return job

    async def _submit(
        self,
        spec: JobSpec,
        explainer: Explainer | None,
        scorers: list[tuple[str, Scorer]],
        force: bool,
        caller: str | None = None,
    ) -> Job:
        if spec.max_sequences is not None and spec.max_sequences < 1:
            raise BadInput(f"maxSequences must be at least 1, got {spec.max_sequences}", argument="maxSequences")
        key = spec.key()
        # Concurrent asks for one key take turns: the second finds the first's job instead of creating a
        # second job with the same id (whose claim would then find this process's own log).
        async with self._one_submission(key):
            return await self._submit_alone(key, spec, explainer, scorers, force, caller)

    @contextlib.asynccontextmanager
    async def _one_submission(self, key: str) -> AsyncIterator[None]:
        lock, users = self._submitting.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._submitting[key]

    async def _submit_alone(
        self,
        key: str,
        spec: JobSpec,
        explainer: Explainer | None,
        scorers: list[tuple[str, Scorer]],
        force: bool,
        caller: str | None,
    ) -> Job:
        await self._sync(key)
        latest = self._latest.get(key)
        if latest is not None and latest.status is JobStatus.INTERRUPTED and not latest.watched:
            return await self._resume(latest, explainer, scorers, caller)
        if (job := self._reusable(key, force)) is not None:
            return job
        record = await self._load_record(spec.node)
        check_explainable(record, str(spec.node))
        for _, scorer in scorers:  # a node a method cannot score is refused before a job exists
            scorer.planned_sequences(record, spec.max_sequences)
        previous = self._latest.get(key)
        run = previous.run + 1 if previous else 1
        job = Job(key if run == 1 else f"{key}.{run}", spec, run, self.log)
        self._take_slot(job, caller)
        try:
            theirs = await self._claim(job)
        except BaseException:
            self._release_slot(job)
            raise
        if theirs is not None:  # another server runs this run: follow it (it holds no slot here)
            self._release_slot(job)
            return theirs
        self._jobs[job.id] = job
        self._latest[key] = job
        await self.log.describe(job.id, {"spec": spec.to_json(), "run": run})
        self._start(job, record, explainer, scorers)
        return job

    async def _run(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorers: list[tuple[str, Scorer]]
    ) -> None:
        try:
            async with self._slots:
                job.status = JobStatus.RUNNING
                await self.log.append(job.id, Started())
                result = await self._work(job, record, explainer, scorers)
                if self._persist is not None:
                    try:
                        await self._persist(result)
                    except NeuronExplainerError:
                        raise
                    except Exception as e:
                        raise UpstreamUnavailable(f"storing the result failed: {type(e).__name__}: {e}") from e
                job.result = result
                # The event first, then the status: whoever sees COMPLETED finds JobCompleted in the log.
                scores = {r.method: r.score for r in result.scores} if result.scores else None
                await self.log.append(job.id, Completed(result.explanation, result.score, scores))
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
        finally:
            self._release_slot(job)

    async def _fail(self, job: Job, error: NeuronExplainerError | None, event: Failed) -> None:
        job.error = error
        await self.log.append(job.id, event)
        job.status = JobStatus.FAILED

    async def _work(
        self, job: Job, record: NeuronRecord, explainer: Explainer | None, scorers: list[tuple[str, Scorer]]
    ) -> JobResult:
        spec = job.spec
        provenance: dict[str, object] = {}
        if explainer is not None and job.carried_explanation is not None:
            explanation, provenance = job.carried_explanation, job.carried_provenance
        elif explainer is not None:
            explained = await explainer.explain(record)
            explanation, provenance = explained.text, dict(explained.provenance)
            await self.log.append(job.id, ExplanationProduced(explanation, provenance or None))
        else:
            assert spec.explanation is not None
            explanation = spec.explanation
        if not scorers:
            return JobResult(spec, explanation, None, None, None, (), provenance)
        total = sum(scorer.planned_sequences(record, spec.max_sequences) for _, scorer in scorers)
        seen = set(job.logged_sequences)  # a resumed run's sequences are scored again, but logged once
        if not seen:
            await self.log.append(job.id, Progress(0, total))
        reporting = asyncio.Lock()  # a log append may wait (a store write): keep each pair together, in order

        def reporter(method: str) -> Callable[[SequenceSimulated], Awaitable[None]]:
            async def on_sequence(outcome: SequenceSimulated) -> None:
                async with reporting:
                    # Logged events of a one-method job may carry the method or not (older logs): both count.
                    if (method, outcome.index) in seen or (len(scorers) == 1 and (None, outcome.index) in seen):
                        return
                    seen.add((method, outcome.index))
                    await self.log.append(job.id, dataclasses.replace(outcome, method=method))
                    await self.log.append(job.id, Progress(len(seen), total))

            return on_sequence

        outcomes: dict[str, MethodResult] = {}

        async def run(method: str, scorer: Scorer) -> None:
            try:
                outcome = await scorer.score(
                    explanation, record, max_sequences=spec.max_sequences, on_sequence=reporter(method)
                )
            except NeuronExplainerError as e:
                if len(scorers) == 1:
                    raise
                raise type(e)(f"method {method}: {e.message}", **{**e.fields, "method": method}) from e
            outcomes[method] = MethodResult(method, outcome.score, outcome.scored)

        try:
            async with asyncio.TaskGroup() as group:
                for method, scorer in scorers:
                    group.create_task(run(method, scorer))
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        results = tuple(outcomes[m] for m, _ in scorers)
        first = results[0]
        return JobResult(spec, explanation, first.score, first.scored, first.method, results, provenance)
