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
from neuron_explainer.jobs.manager import Job, JobKind, JobManager, JobResult, JobSpec, JobStatus, PersistHook
from neuron_explainer.jobs.persist import ExplanationWriter

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
    "PersistHook",
    "Progress",
    "SequenceSimulated",
    "Started",
]
