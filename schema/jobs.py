"""Jobs and their typed event log. ``Job`` is a thin view of the core's job handle (read live)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from neuron_explainer import jobs as core
from neuron_explainer.resolvers import jobs as job_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.schema.nodes import Node, node_of
from neuron_explainer.schema.policy.declare import plain, records
from neuron_explainer.schema.policy.errors import ErrorCode

JobStatus = strawberry.enum(core.JobStatus, name="JobStatus", description="Where a job is in its life.")
JobKind = strawberry.enum(core.JobKind, name="JobKind", description="What a job does.")


@strawberry.interface(
    description="One entry of a job's event log. `seq` is its position (0, 1, 2, ...): a client that "
    "saw `seq = n` resubscribes with `after: n` and misses nothing. A log ends with one JobCompleted or "
    "JobFailed.",
    directives=[plain()],
)
class JobEvent:
    seq: int


@strawberry.type(description="The job got a slot and began.")
class JobStarted(JobEvent):
    pass


@strawberry.type(description="The explainer wrote its explanation (explain jobs).")
class ExplanationProduced(JobEvent):
    text: str


@strawberry.type(
    description="One scored sequence, in completion order. Simulation methods: per-token predicted "
    "(the simulator's 0-10 scale) and actual activations. Heads: one labelled token pair (one value each: "
    "P(label 1) and the 0/1 label; sequenceScore null). detection / fuzzing: one example (the answer 0/1 "
    "and the label 0/1); embedding: one example (its cosine similarity to the explanation and the label)."
)
class SequenceSimulated(JobEvent):
    method: str | None = strawberry.field(description="The scoring method (a job may run several).")
    index: int = strawberry.field(description="Position in the method's list of scored sequences.")
    tokens: list[str]
    predicted: list[float]
    actual: list[float]
    sequence_score: float | None = strawberry.field(description="Correlation on this sequence alone.")
    running_score: float | None = strawberry.field(
        description="The score over every sequence finished so far (all concatenated, in index order)."
    )


@strawberry.type(description="How many sequences are scored out of how many.")
class JobProgress(JobEvent):
    done: int
    total: int


@strawberry.type(description="One scoring method's score.", directives=[plain()])
class MethodScore:
    method: str
    score: float | None = strawberry.field(
        description="Simulation: correlation over all sequences concatenated (heads: ROC-AUC); detection, "
        "fuzzing: balanced accuracy; embedding: ROC-AUC of similarity. Null when undefined."
    )


@strawberry.type(description="The job ended well; for scored jobs the result is already stored.")
class JobCompleted(JobEvent):
    explanation: str
    score: float | None = strawberry.field(
        description="The first scoring method's score (see scores); null when not scored."
    )
    scores: list[MethodScore] = strawberry.field(description="Every scoring method's score, in the job's order.")


@strawberry.type(description="The job ended without a result; nothing was stored.")
class JobFailed(JobEvent):
    code: ErrorCode = strawberry.field(description="As extensions.code: LLM_BAD_REPLY, UPSTREAM_UNAVAILABLE, ...")
    message: str


EVENT_TYPES = (JobStarted, ExplanationProduced, SequenceSimulated, JobProgress, JobCompleted, JobFailed)


def error_code(code: str) -> ErrorCode:
    """A logged failure's code as the enum (a log written by an older server may hold another string)."""
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.INTERNAL_SERVER_ERROR


def event_of(event: core.JobEvent) -> JobEvent:
    match event:
        case core.Started(seq=seq):
            return JobStarted(seq=seq)
        case core.ExplanationProduced(text=text, seq=seq):
            return ExplanationProduced(seq=seq, text=text)
        case core.SequenceSimulated():
            return SequenceSimulated(
                seq=event.seq,
                method=event.method,
                index=event.index,
                tokens=event.tokens,
                predicted=event.predicted,
                actual=event.actual,
                sequence_score=event.sequence_score,
                running_score=event.running_score,
            )
        case core.Progress(done=done, total=total, seq=seq):
            return JobProgress(seq=seq, done=done, total=total)
        case core.Completed(explanation=explanation, score=score, scores=scores, seq=seq):
            listed = [MethodScore(method=m, score=v) for m, v in (scores or {}).items()]
            return JobCompleted(seq=seq, explanation=explanation, score=score, scores=listed)
        case core.Failed(code=code, message=message, seq=seq):
            return JobFailed(seq=seq, code=error_code(code), message=message)
    raise TypeError(f"unknown job event {event!r}")


@strawberry.type(description="What a completed job produced.", directives=[plain()])
class JobResult:
    explanation: str
    score: float | None = strawberry.field(description="Null when the explanation was not scored.")
    method: str | None = strawberry.field(
        description="The (first) scoring method; stored explanations show it as Explanation.method. Null when "
        "not scored."
    )
    scores: list[MethodScore] = strawberry.field(description="Every scoring method's score, in the job's order.")


@strawberry.type(description="Why a job failed.", directives=[plain()])
class JobError:
    code: ErrorCode
    message: str


@strawberry.type(
    description="An explain or score job. Its id is a hash of its inputs: the same request returns the "
    "same job (a rerun with force: true gets `<hash>.2`, ...). Jobs run whether or not anyone subscribes.",
    directives=[plain()],
)
class Job:
    job: strawberry.Private[core.Job]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.job.id)

    @strawberry.field
    def status(self) -> JobStatus:  # type: ignore[valid-type]
        return self.job.status

    @strawberry.field
    def kind(self) -> JobKind:  # type: ignore[valid-type]
        return self.job.spec.kind

    @strawberry.field
    def node(self) -> Node:
        return node_of(self.job.spec.node)

    @strawberry.field(description="The explanation method (explain jobs) or the scoring method (score jobs).")
    def method(self) -> str:
        return self.job.spec.method

    @strawberry.field(description="Every scoring method the job runs, in order (score jobs: method first).")
    def methods(self) -> list[str]:
        return list(self.job.spec.scoring_methods)

    @strawberry.field(description="Explain jobs: the method that also scores the new explanation, if any.")
    def score_method(self) -> str | None:
        return self.job.spec.score_method

    @strawberry.field
    def max_sequences(self) -> int | None:
        return self.job.spec.max_sequences

    @strawberry.field
    def result(self) -> JobResult | None:
        r = self.job.result
        if r is None:
            return None
        scores = [MethodScore(method=m.method, score=m.score) for m in r.scores]
        return JobResult(explanation=r.explanation, score=r.score, method=r.scoring_method, scores=scores)

    @strawberry.field
    async def error(self, info: Info[Context, None]) -> JobError | None:
        failed = await job_resolvers.failure(info.context, self.job)
        return None if failed is None else JobError(code=error_code(failed.code), message=failed.message)

    @strawberry.field(
        description="The events logged so far with seq > after (all when after is null); does not wait.",
        directives=[records(None, 50)],
    )
    async def events(self, info: Info[Context, None], after: int | None = None) -> list[JobEvent]:
        return [event_of(e) for e in await job_resolvers.logged_events(info.context, self.job, after)]


@strawberry.type
class JobQuery:
    """``Query.job``, merged into the root ``Query`` in ``schema/__init__.py``."""

    @strawberry.field(
        description="A job by id (from explainNode / scoreExplanation); NOT_FOUND when unknown.", directives=[plain()]
    )
    async def job(self, info: Info[Context, None], id: strawberry.ID) -> Job | None:
        return Job(job=await job_resolvers.job(info.context, str(id)))
