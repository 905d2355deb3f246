"""Request policy: everything that decides whether and how a GraphQL request runs, in front of execution.

One file per concern: ``declare`` (a field's ``@policy``: price and cacheability), ``shape`` (depth,
aliases, size, spreads bounded), ``cost`` (the budget), ``auth`` (API keys), ``rate_limit`` (per-caller
token buckets), ``caches`` (byte-bounded parse / validation / estimate / response caches), ``errors``
(typed codes, masking), ``execution`` (the fast path) and ``guard`` (the pipeline, in order).
"""

from neuron_explainer.schema.policy.caches import CachedResponses, ResponseCache
from neuron_explainer.schema.policy.declare import (
    Policy,
    Price,
    explain_job,
    fixed,
    live_prompt,
    per_item,
    plain,
    policy_of,
    records,
    score_job,
)
from neuron_explainer.schema.policy.errors import ErrorCode, TypedErrors
from neuron_explainer.schema.policy.execution import FastListExecutionContext
from neuron_explainer.schema.policy.guard import RequestGuard, RequestPolicy

EXTENSIONS = (TypedErrors, RequestGuard, CachedResponses)
"""In this order: errors are translated last (outermost); the guard runs before the response cache."""

__all__ = [
    "EXTENSIONS",
    "CachedResponses",
    "ErrorCode",
    "FastListExecutionContext",
    "Policy",
    "Price",
    "RequestGuard",
    "RequestPolicy",
    "ResponseCache",
    "explain_job",
    "fixed",
    "live_prompt",
    "per_item",
    "plain",
    "policy_of",
    "records",
    "score_job",
]
