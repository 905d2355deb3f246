"""Jobs and their typed event log. ``Job`` is a thin view of the core's job handle (read live)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from neuron_explainer import jobs as core
from resolvers import jobs as job_resolvers
from resolvers.context import Context
from schema.nodes import Node, node_of

JobStatus = strawberry.enum(core.JobStatus, name="JobStatus", description="Where a job is in its life.")
JobKind = strawberry.enum(core.JobKind, name="JobKind", description="What a job does.")


@strawberry.interface(
    description="One entry of a job's event log. `seq` is its position (0, 1, 2, ...): a client that "
    "saw `seq = n` resubscribes with `after: n` and misses nothing. A log ends with one JobCompleted or "
    "JobFailed."
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
    description="One scored sequence, in completion order. Neurons and latents: per-token predicted "
    "(the simulator's 0-10 scale) and actual activations. Heads: one labelled token pair (one value each: "
    "P(label 1) and the 0/1 label; sequenceScore null)."
)
class SequenceSimulated(JobEvent):
    index: int = strawberry.field(description="Position in the list of scored sequences.")
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


@strawberry.type(description="The job ended well; for scored jobs the result is already stored.")
class JobCompleted(JobEvent):
    explanation: str
    score: float | None = strawberry.field(
        description="Correlation over all sequences concatenated (neurons, latents) or ROC-AUC (heads); "
        "null when not scored."
    )


@strawberry.type(description="The job ended without a result; nothing was stored.")
class JobFailed(JobEvent):
    code: str = strawberry.field(description="As extensions.code: LLM_BAD_REPLY, UPSTREAM_UNAVAILABLE, ...")
    message: str


EVENT_TYPES = (JobStarted, ExplanationProduced, SequenceSimulated, JobProgress, JobCompleted, JobFailed)


def event_of(event: core.JobEvent) -> JobEvent:
    match event:
        case core.Started(seq=seq):
            return JobStarted(seq=seq)
        case core.ExplanationProduced(text=text, seq=seq):
            return ExplanationProduced(seq=seq, text=text)
        case core.SequenceSimulated():
            return SequenceSimulated(
                seq=event.seq,
                index=event.index,
                tokens=event.tokens,
                predicted=event.predicted,
                actual=event.actual,
                sequence_score=event.sequence_score,
                running_score=event.running_score,
            )
        case core.Progress(done=done, total=total, seq=seq):
            return JobProgress(seq=seq, done=done, total=total)
        case core.Completed(explanation=explanation, score=score, seq=seq):
            return JobCompleted(seq=seq, explanation=explanation, score=score)
        case core.Failed(code=code, message=message, seq=seq):
            return JobFailed(seq=seq, code=code, message=message)
    raise TypeError(f"unknown job event {event!r}")


@strawberry.type(description="What a completed job produced.")
class JobResult:
    explanation: str
    score: float | None = strawberry.field(description="Null when the explanation was not scored.")
    method: str | None = strawberry.field(
        description="The scoring method; stored explanations show it as Explanation.method. "
        "Null when not scored."
    )


@strawberry.type(description="Why a job failed.")
class JobError:
    code: str
    message: str


@strawberry.type(
    description="An explain or score job. Its id is a hash of its inputs: the same request returns the "
    "same job (a rerun with force: true gets `<hash>.2`, ...). Jobs run whether or not anyone subscribes."
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
        return JobResult(explanation=r.explanation, score=r.score, method=r.scoring_method)

    @strawberry.field
    async def error(self, info: Info[Context, None]) -> JobError | None:
        failed = await job_resolvers.failure(info.context, self.job)
        return None if failed is None else JobError(code=failed.code, message=failed.message)

    @strawberry.field(
        description="The events logged so far with seq > after (all when after is null); does not wait."
    )
    async def events(self, info: Info[Context, None], after: int | None = None) -> list[JobEvent]:
        return [event_of(e) for e in await job_resolvers.logged_events(info.context, self.job, after)]


@strawberry.type
class JobQuery:
    """``Query.job``, merged into the root ``Query`` in ``schema/__init__.py``."""

    @strawberry.field(
        description="A job by id (from explainNode / scoreExplanation); NOT_FOUND when unknown."
    )
    def job(self, info: Info[Context, None], id: strawberry.ID) -> Job | None:
        return Job(job=job_resolvers.job(info.context, str(id)))
