"""The root ``Mutation``: starting explain and score jobs (they return at once; follow ``jobEvents``)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from resolvers import jobs as job_resolvers
from resolvers.context import Context
from schema.jobs import Job


@strawberry.input(description="Write an explanation of a node (and optionally score it).")
class ExplainNodeInput:
    node_id: strawberry.ID
    method: str | None = strawberry.field(
        default=None,
        description="baseline (LLM) or top-tokens (no LLM); "
        "default from --neuron_method / --attention_head_method.",
    )
    score_method: str | None = strawberry.field(
        default=None,
        description="Also score the explanation (and store it) with this method; "
        "null: explain only, nothing stored.",
    )
    max_sequences: int | None = strawberry.field(
        default=None, description="Score on at most this many sequences."
    )
    force: bool = strawberry.field(
        default=False, description="Run again even if these inputs already completed."
    )


@strawberry.input(
    description="Score an explanation of a node by simulating its activations; the result is stored."
)
class ScoreExplanationInput:
    node_id: strawberry.ID
    explanation: str
    method: str | None = strawberry.field(
        default=None,
        description="baseline (LLM, logprob-free), all-at-once (LLM prompt logprobs) or "
        "token-lookup (no LLM); default from --neuron_method / --attention_head_method.",
    )
    max_sequences: int | None = strawberry.field(
        default=None, description="Score on at most this many sequences."
    )
    force: bool = strawberry.field(
        default=False, description="Run again even if these inputs already completed."
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start (or find) a job explaining a node.")
    async def explain_node(self, info: Info[Context, None], input: ExplainNodeInput) -> Job:
        job = await job_resolvers.explain_node(
            info.context,
            str(input.node_id),
            input.method,
            input.score_method,
            input.max_sequences,
            input.force,
        )
        return Job(job=job)

    @strawberry.mutation(description="Start (or find) a job scoring an explanation of a node.")
    async def score_explanation(self, info: Info[Context, None], input: ScoreExplanationInput) -> Job:
        job = await job_resolvers.score_explanation(
            info.context,
            str(input.node_id),
            input.explanation,
            input.method,
            input.max_sequences,
            input.force,
        )
        return Job(job=job)
