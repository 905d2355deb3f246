"""Starting explain/score jobs, finding them, and reading their event logs.

Method defaults come from ``--neuron_method`` (neurons and latents) or ``--attention_head_method``
(heads); a scorer-only default such as ``token-lookup`` explains with its partner ``top-tokens``
and vice versa (``explanations.methods.default_explainer``). Node ids go through ``resolve_node``,
so an out-of-range id is ``BAD_USER_INPUT`` before any job exists.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from neuron_explainer.errors import BadInput
from neuron_explainer.explanations.methods import default_explainer, default_scorer
from neuron_explainer.jobs import Failed, Job, JobEvent, JobManager, JobStatus
from neuron_explainer.nodes import NodeId
from neuron_explainer.resolvers.context import Context
from neuron_explainer.resolvers.nodes import resolve_node


def _jobs(ctx: Context) -> JobManager:
    jobs = ctx.services.jobs
    if not isinstance(jobs, JobManager):
        raise RuntimeError("this server has no job manager (open_services builds one)")
    return jobs


def _default_flag(ctx: Context, node: NodeId) -> str:
    s = ctx.services.settings
    return s.attention_head_method if node.kind.is_token_pair else s.neuron_method


async def explain_node(
    ctx: Context,
    node_id: str,
    method: str | None,
    score_method: str | None,
    max_sequences: int | None,
    force: bool,
) -> Job:
    node = resolve_node(ctx, node_id)
    return await _jobs(ctx).explain(
        node,
        method or default_explainer(_default_flag(ctx, node)),
        score_method=score_method,
        max_sequences=max_sequences,
        force=force,
        caller=ctx.caller,
    )


async def score_explanation(
    ctx: Context,
    node_id: str,
    explanation: str,
    method: str | list[str] | None,
    max_sequences: int | None,
    force: bool,
) -> Job:
    """``method`` is one name, a list of names (several methods in one job) or None (the default)."""
    node = resolve_node(ctx, node_id)
    return await _jobs(ctx).score(
        node,
        explanation,
        method if isinstance(method, list) else (method or default_scorer(_default_flag(ctx, node))),
        max_sequences=max_sequences,
        force=force,
        caller=ctx.caller,
    )


async def job(ctx: Context, job_id: str) -> Job:
    """The job, or ``NOT_FOUND``: this process's, or (with ``--persist_jobs``) any server's on the store."""
    return await _jobs(ctx).find(job_id)


def _check_after(after: int | None) -> None:
    if after is not None and after < -1:
        raise BadInput(f"after must be a seq (>= -1), got {after}", argument="after")


async def logged_events(ctx: Context, found: Job, after: int | None) -> list[JobEvent]:
    """What the job has logged so far with ``seq > after``; does not wait."""
    _check_after(after)
    events = await _jobs(ctx).log.snapshot(found.id)
    return [e for e in events if after is None or e.seq > after]


async def follow_events(ctx: Context, job_id: str, after: int | None) -> AsyncIterator[JobEvent]:
    """Replay from ``after`` then follow, ending with the terminal event (from the store, for a job another
    server runs)."""
    _check_after(after)
    found = await job(ctx, job_id)
    async for event in found.events(after):
        yield event


async def failure(ctx: Context, found: Job) -> Failed | None:
    """The job's ``Failed`` event when it failed (the log holds the code for every failure, cancels too)."""
    if found.status is not JobStatus.FAILED:
        return None
    events = await _jobs(ctx).log.snapshot(found.id)
    last = events[-1] if events else None
    return last if isinstance(last, Failed) else None
