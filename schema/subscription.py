"""The root ``Subscription``: a job's event log, replayed from ``after`` and then followed live."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from neuron_explainer.resolvers import jobs as job_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.schema.jobs import JobEvent, event_of
from neuron_explainer.schema.policy.declare import fixed


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every event of a job with seq > after (all when null), then new ones as they come; "
        "ends after JobCompleted or JobFailed. Reconnect with after = the last seq seen to miss nothing.",
        directives=[fixed(10)],
    )
    async def job_events(
        self, info: Info[Context, None], job_id: strawberry.ID, after: int | None = None
    ) -> AsyncGenerator[JobEvent, None]:
        async for event in job_resolvers.follow_events(info.context, str(job_id), after):
            yield event_of(event)
