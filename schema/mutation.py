"""The root ``Mutation``: starting explain and score jobs (they return at once; follow ``jobEvents``)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from neuron_explainer.resolvers import jobs as job_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.schema.jobs import Job
from neuron_explainer.schema.methods import ExplainMethod, ScoreMethod, method_name, method_names
from neuron_explainer.schema.policy.declare import explain_job, score_job


@strawberry.input(description="Write an explanation of a node (and optionally score it).")
class ExplainNodeInput:
    node_id: strawberry.ID
    method: ExplainMethod | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="BASELINE (LLM) or TOP_TOKENS (no LLM); default from --neuron_method / --attention_head_method.",
    )
    score_method: ScoreMethod | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="Also score the explanation (and store it) with this method; null: explain only, nothing stored.",
    )
    max_sequences: int | None = strawberry.field(default=None, description="Score on at most this many sequences.")
    force: bool = strawberry.field(default=False, description="Run again even if these inputs already completed.")


@strawberry.input(
    description="Score an explanation of a node with one or several methods; one row per method is stored."
)
class ScoreExplanationInput:
    node_id: strawberry.ID
    explanation: str
    method: ScoreMethod | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="BASELINE (LLM, logprob-free simulation), ALL_AT_ONCE (LLM prompt logprobs), TOKEN_LOOKUP "
        "(no LLM), DETECTION / FUZZING (LLM, balanced accuracy) or EMBEDDING (local model, ROC-AUC); default "
        "from --neuron_method / --attention_head_method. Ignored when methods is given.",
    )
    methods: list[ScoreMethod] | None = strawberry.field(  # type: ignore[valid-type]
        default=None,
        description="Several scoring methods in one job (one event log, one JobCompleted with every score); "
        "an empty list is BAD_USER_INPUT.",
    )
    max_sequences: int | None = strawberry.field(default=None, description="Score on at most this many sequences.")
    force: bool = strawberry.field(default=False, description="Run again even if these inputs already completed.")


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Start (or find) a job explaining a node.", directives=[explain_job()])
    async def explain_node(self, info: Info[Context, None], input: ExplainNodeInput) -> Job:
        job = await job_resolvers.explain_node(
            info.context,
            str(input.node_id),
            method_name(input.method),
            method_name(input.score_method),
            input.max_sequences,
            input.force,
        )
        return Job(job=job)

    @strawberry.mutation(
        description="Start (or find) a job scoring an explanation of a node.", directives=[score_job()]
    )
    async def score_explanation(self, info: Info[Context, None], input: ScoreExplanationInput) -> Job:
        job = await job_resolvers.score_explanation(
            info.context,
            str(input.node_id),
            input.explanation,
            method_names(input.methods) if input.methods is not None else method_name(input.method),
            input.max_sequences,
            input.force,
        )
        return Job(job=job)
