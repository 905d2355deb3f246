"""Test-only fault injection into a real server process, set by one environment variable.

``NEURON_EXPLAINER_TEST_FAULTS`` holds JSON; unset (always, in production) nothing here runs:
- ``{"internal_node": "<node id>"}``: starting a job on that node raises a plain ``RuntimeError`` in the
  mutation's resolver (what an unexpected bug looks like to the error masking);
- ``{"internal_follow_node": "<node id>"}``: a ``jobEvents`` subscription to a job on that node raises
  one after its first event;
- ``{"oom_batches": n}``: the inference engine's next ``n`` batches raise ``torch.cuda.OutOfMemoryError``
  on its worker thread (the engine's ``before_batch`` seam), as a GPU out of memory would;
- ``{"start_delay_s": s}``: start-up waits ``s`` seconds before opening anything, as a slow model load
  would (``start_delay``), so a test can watch the server while it is starting.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any

from neuron_explainer.resolvers.context import Services

ENV = "NEURON_EXPLAINER_TEST_FAULTS"
log = logging.getLogger("neuron_explainer.server")


class InjectedFault(RuntimeError):
    """Deliberately not a ``NeuronExplainerError``: it stands for a bug."""


def start_delay() -> float:
    raw = os.environ.get(ENV)
    return float(json.loads(raw).get("start_delay_s", 0)) if raw else 0.0


def install(services: Services) -> None:
    raw = os.environ.get(ENV)
    if not raw:
        return
    faults: dict[str, Any] = json.loads(raw)
    log.warning("TEST FAULTS INJECTED: %s", faults)
    if faults.get("internal_node") or faults.get("internal_follow_node"):
        _break_jobs(services, faults.get("internal_node"), faults.get("internal_follow_node"))
    if oom := int(faults.get("oom_batches", 0)):
        _oom_batches(services, oom)


def _break_jobs(services: Services, node: str | None, follow_node: str | None) -> None:
    jobs = services.jobs
    if jobs is None:
        return
    explain, score, follow = jobs.explain, jobs.score, jobs.log.follow

    async def broken_explain(target: Any, *args: Any, **kwargs: Any) -> Any:
        if str(target) == node:
            raise InjectedFault(f"injected internal error explaining {node}")
        return await explain(target, *args, **kwargs)

    async def broken_score(target: Any, *args: Any, **kwargs: Any) -> Any:
        if str(target) == node:
            raise InjectedFault(f"injected internal error scoring {node}")
        return await score(target, *args, **kwargs)

    async def broken_follow(job_id: str, after: int | None = None) -> AsyncIterator[Any]:
        target = str(jobs.get(job_id).spec.node)
        async for event in follow(job_id, after):
            yield event
            if target == follow_node:
                raise InjectedFault(f"injected internal error following a job on {follow_node}")

    # Monkey-patching is the point of a fault seam: the real methods stay untouched in production.
    jobs.explain = broken_explain  # type: ignore[method-assign,assignment]
    jobs.score = broken_score  # type: ignore[method-assign,assignment]
    jobs.log.follow = broken_follow  # type: ignore[method-assign]


def _oom_batches(services: Services, count: int) -> None:
    import torch

    from neuron_explainer.inference.engine import InferenceEngine

    engine = getattr(services.engine, "backend", services.engine)  # behind the live queue's bound
    if not isinstance(engine, InferenceEngine):
        log.warning("oom_batches: no in-process inference engine runs")
        return

    left = [count]
    chained = getattr(engine, "_before_batch", None)

    def before_batch(requests: Sequence[Any]) -> None:
        if left[0] > 0:
            left[0] -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by NEURON_EXPLAINER_TEST_FAULTS)")
        if chained is not None:
            chained(requests)

    engine._before_batch = before_batch
