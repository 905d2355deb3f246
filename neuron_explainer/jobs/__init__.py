"""Explain and score jobs with a replayable event log."""

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
from neuron_explainer.jobs.manager import Job, JobManager, PersistHook
from neuron_explainer.jobs.persist import ExplanationWriter
from neuron_explainer.jobs.spec import JobKind, JobResult, JobSpec, JobStatus, MethodResult

__all__ = [
    "Completed",
    "EventLog",
    "ExplanationWriter",
    "ExplanationProduced",
    "Failed",
    "InMemoryEventLog",
    "Job",
    "JobEvent",
    "JobKind",
    "JobManager",
    "JobResult",
    "JobSpec",
    "JobStatus",
    "MethodResult",
    "PersistHook",
    "Progress",
    "SequenceSimulated",
    "Started",
]
