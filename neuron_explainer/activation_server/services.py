"""Building and closing the long-lived services, in one place, in dependency order."""

from __future__ import annotations

import asyncio
import logging
import os

from neuron_explainer.activation_server.faults import install as install_faults
from neuron_explainer.activation_server.model_service import open_demo_dataset, open_model
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry, default_explainer, default_scorer
from neuron_explainer.jobs import ExplanationWriter, JobManager
from neuron_explainer.jobs.store_log import StoreEventLog
from neuron_explainer.nodes import NodeId
from neuron_explainer.provenance import DataSource
from neuron_explainer.settings import ServerSettings
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetRegistry
from neuron_explainer.storage.locations import open_store
from neuron_explainer.storage.overlay import OverlayStore
from neuron_explainer.storage.reader import RecordReader
from resolvers.context import Services, build_context
from resolvers.records import resolve_record
from schema import schema as strawberry_schema
from schema.guard import RequestPolicy
from schema.response_cache import ResponseCache

log = logging.getLogger("neuron_explainer.server")


def llm_settings(settings: ServerSettings) -> LlmSettings:
    return LlmSettings(
        api_key=os.environ.get(settings.llm_api_key_env) or None,
        base_url=settings.llm_base_url,
        explainer_model=settings.explainer_model,
        simulator_model=settings.simulator_model,
        max_concurrency=settings.llm_concurrency,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        backoff_initial_s=settings.llm_backoff_s,
    )


def check_methods(settings: ServerSettings) -> None:
    """Unknown ``--neuron_method`` / ``--attention_head_method`` values stop the server at start-up."""
    explainers, scorers = MethodRegistry.explainer_names(), MethodRegistry.scorer_names()
    for flag in ("neuron_method", "attention_head_method"):
        name = getattr(settings, flag)
        if default_explainer(name) not in explainers or default_scorer(name) not in scorers:
            known = sorted({*MethodRegistry.explainer_names(), *MethodRegistry.scorer_names()})
            raise ValueError(f"--{flag} {name!r} is not a method (known: {', '.join(known)})")


async def open_services(settings: ServerSettings) -> Services:
    check_methods(settings)
    store: BlobStore = open_store(settings.data_root)
    if settings.write_root is not None:
        store = OverlayStore(open_store(settings.write_root), store)
    registry = DatasetRegistry.default()
    try:
        registry = await registry.with_index(store)
    except Exception as exc:  # an unreachable store must not stop the server from starting
        log.warning("could not read the dataset index at %s: %s", store.location, exc)
    reader = RecordReader(
        store,
        registry,
        cache_bytes=settings.cache_bytes,
        max_concurrency=settings.max_concurrent_reads,
        explanation_methods=MethodRegistry.scorer_names(),
    )
    cache = ResponseCache(settings.cache_bytes // 4)
    services = Services(settings=settings, reader=reader, registry=registry, response_cache=cache)
    services.policy = RequestPolicy(settings, strawberry_schema._schema)
    await open_model(services, settings)
    await open_demo_dataset(services, settings)
    services.llm = LlmClient.from_settings(llm_settings(settings))
    if services.llm is None:
        log.info("no LLM key in $%s: LLM methods answer LLM_NOT_CONFIGURED", settings.llm_api_key_env)

    async def load_record(node: NodeId) -> NeuronRecord:
        """As ``Node.stats`` sees it: stored first, live when a model runs (``resolve_record``)."""
        return (await resolve_record(build_context(services), node, DataSource.AUTO)).record

    services.jobs = JobManager(
        MethodRegistry(services.llm, sequence_concurrency=settings.llm_concurrency),
        load_record,
        persist=ExplanationWriter(reader),
        max_concurrent_jobs=settings.max_concurrent_jobs,
        log=StoreEventLog(getattr(store, "writable", store)) if settings.persist_jobs else None,
        parse_node=services.parse_node_id,
    )
    if settings.persist_jobs:
        await restore_jobs(services.jobs, services)
    log.info("serving data from %s (%d datasets)", store.location, len(registry.all()))
    install_faults(services)  # test-only; a no-op unless NEURON_EXPLAINER_TEST_FAULTS is set
    return services


async def restore_jobs(jobs: JobManager, services: Services) -> None:
    """Jobs of earlier processes come back (status, events, results); interrupted ones resume in the
    background. An unreachable store only costs the old jobs, never the start-up."""
    try:
        restored = await jobs.restore()
    except Exception as exc:
        log.warning("could not read earlier jobs from %s: %s", services.reader.store.location, exc)
        return
    if restored:
        log.info("restored %d jobs from %s", restored, services.reader.store.location)
        services.extras["resuming_jobs"] = asyncio.create_task(jobs.resume_interrupted(), name="resume jobs")


async def close_services(services: Services) -> None:
    if isinstance(services.jobs, JobManager):
        await services.jobs.close(grace_s=services.settings.shutdown_grace_s)
    for name in ("engine", "llm"):
        part = getattr(services, name)
        close = getattr(part, "close", None) if part is not None else None
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
    await services.reader.store.close()
