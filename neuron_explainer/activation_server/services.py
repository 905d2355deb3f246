"""Building and closing the long-lived services, in one place, in dependency order.

``open_server`` returns the ``ServerState`` the Starlette lifespan hands to every request (lifespan
state); ``close_server`` stops every background task and connection it opened, in reverse order.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from neuron_explainer.activation_server.faults import install as install_faults
from neuron_explainer.activation_server.model_service import check_backend, open_demo_dataset, open_model
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.explanations.few_shot import DatasetFewShot
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry, default_explainer, default_scorer
from neuron_explainer.explanations.search_index import ExplanationIndex
from neuron_explainer.jobs import ExplanationWriter, JobManager
from neuron_explainer.jobs.cluster import JobCluster
from neuron_explainer.jobs.clustered import ClusteredJobManager
from neuron_explainer.jobs.leases import Leases
from neuron_explainer.jobs.store_log import StoreEventLog
from neuron_explainer.nodes import NodeId
from neuron_explainer.provenance import DataSource
from neuron_explainer.resolvers.context import Services, build_context
from neuron_explainer.resolvers.records import resolve_record
from neuron_explainer.schema import schema as strawberry_schema
from neuron_explainer.schema.metrics import OperationObserver
from neuron_explainer.schema.policy import RequestPolicy, ResponseCache
from neuron_explainer.settings import ServerSettings
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.datasets import DatasetRegistry
from neuron_explainer.storage.locations import open_store, redact
from neuron_explainer.storage.overlay import OverlayStore
from neuron_explainer.storage.reader import RecordReader

log = logging.getLogger("neuron_explainer.server")


@dataclass
class ServerState:
    """What one server process holds for its lifetime: the services resolvers use, and the GraphQL
    request policy in front of them."""

    services: Services
    policy: RequestPolicy
    responses: ResponseCache
    metrics: OperationObserver | None = None


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


async def open_reader(settings: ServerSettings) -> RecordReader:
    """The store (with ``--write_root`` in front) and the datasets it holds; an unreachable store is
    logged, not fatal: its datasets are simply not listed."""
    store: BlobStore = open_store(settings.data_root)
    if settings.write_root is not None:
        store = OverlayStore(open_store(settings.write_root), store)
    registry = DatasetRegistry.default()
    try:
        registry = await registry.with_index(store)
    except Exception as exc:
        log.warning("could not read the dataset index at %s: %s", store.location, exc)
    return RecordReader(
        store,
        registry,
        cache_bytes=settings.cache_bytes,
        max_concurrency=settings.max_concurrent_reads,
        explanation_methods=MethodRegistry.scorer_names(),
    )


def open_search(services: Services) -> None:
    """The embedding model (loaded in the background when its package is installed) and the search index
    over the writable store, shared by every server on it."""
    services.embedder = SentenceEmbedder()
    store = services.reader.store
    services.search_index = ExplanationIndex(
        store.writable if isinstance(store, OverlayStore) else store, services.embedder
    )
    if services.embedder.available:
        services.embedder.warm_up()


def open_jobs(services: Services) -> JobManager:
    settings, reader = services.settings, services.reader

    async def load_record(node: NodeId) -> NeuronRecord:
        """As ``Node.stats`` sees it: stored first, live when a model runs (``resolve_record``)."""
        return (await resolve_record(build_context(services), node, DataSource.AUTO)).record

    async def load_stored_record(node_id: str) -> NeuronRecord:
        return (await reader.get_record(services.parse_node_id(node_id))).record

    store = reader.store
    index = services.search_index
    few_shot = DatasetFewShot(index, load_stored_record) if index is not None else None
    methods = MethodRegistry(
        services.llm, sequence_concurrency=settings.llm_concurrency, embedder=services.embedder, few_shot=few_shot
    )
    persist, slots, parse = ExplanationWriter(reader, index), settings.max_concurrent_jobs, services.parse_node_id
    per_caller = settings.max_jobs_per_caller
    if not settings.persist_jobs:
        return JobManager(
            methods, load_record, persist=persist, max_concurrent_jobs=slots, max_jobs_per_caller=per_caller,
            parse_node=parse,
        )  # fmt: skip
    # Logs and leases under _jobs/ where the server writes: every server on that store sees the same jobs.
    writable = store.writable if isinstance(store, OverlayStore) else store
    cluster = JobCluster(
        StoreEventLog(writable),
        Leases(writable, ttl_s=settings.job_lease_s),
        keep_s=settings.job_logs_keep_days * 86400.0,
        keep_count=settings.job_logs_keep,
    )
    return ClusteredJobManager(
        methods, load_record, cluster=cluster, persist=persist, max_concurrent_jobs=slots,
        max_jobs_per_caller=per_caller, parse_node=parse,
    )  # fmt: skip


async def restore_jobs(jobs: JobManager, location: str) -> None:
    """Jobs that earlier processes left unfinished and no live server holds come back and resume in the
    background; the rest are read from the store when asked for. An unreachable store only costs the old
    jobs, never the start-up."""
    try:
        restored = await jobs.restore()
    except Exception as exc:
        log.warning("could not read earlier jobs from %s: %s", location, exc)
        restored = 0
    if restored:
        log.info("took back %d unfinished jobs from %s", restored, location)
    if isinstance(jobs, ClusteredJobManager):
        jobs.start()
    elif restored:
        jobs.resume_in_background()


async def open_server(
    settings: ServerSettings,
    metrics: OperationObserver | None = None,
    on_phase: Callable[[str], None] = lambda phase: None,
) -> ServerState:
    """Every service, in dependency order; ``on_phase`` hears what is being opened (``/health/ready``
    shows it). A failure closes what was already opened before it propagates."""
    check_methods(settings)
    check_backend(settings)
    on_phase(f"reading the dataset index at {redact(settings.write_root or settings.data_root)}")
    reader = await open_reader(settings)
    services = Services(settings=settings, reader=reader)
    state = ServerState(
        services=services,
        policy=RequestPolicy(settings, strawberry_schema._schema),
        responses=ResponseCache(settings.cache_bytes // 4),
        metrics=metrics,
    )
    try:
        if settings.run_model:
            on_phase(f"loading model {settings.model_name}")
        await open_model(services, settings)
        if settings.build_demo_dataset and services.model is not None:
            on_phase("building the demo dataset")
        await open_demo_dataset(services, settings)
        services.llm = LlmClient.from_settings(llm_settings(settings))
        if services.llm is None:
            log.info("no LLM key in $%s: LLM methods answer LLM_NOT_CONFIGURED", settings.llm_api_key_env)
        open_search(services)
        services.jobs = open_jobs(services)
        if settings.persist_jobs:
            on_phase("restoring earlier jobs")
            await restore_jobs(services.jobs, reader.store.location)
        install_faults(services)  # test-only; a no-op unless NEURON_EXPLAINER_TEST_FAULTS is set
        await strawberry_schema.execute("{ __typename }")  # the executor's one-off set-up, before the first user
    except BaseException:
        await close_server(state)
        raise
    # Full collections stop the event loop while they walk every live object: under a flood of live
    # prompts (a thousand requests in flight) that is 100s of ms. What start-up built (model, tokenizer,
    # schema) lives as long as the process: frozen, out of the collector's sight. Requests leave few
    # cycles (``policy/execution.py`` breaks graphql-core's), so full collections can be 10x rarer.
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
    return state


async def close_server(state: ServerState) -> None:
    """Stop what ``open_server`` started, users of a service before the service."""
    services = state.services
    if services.jobs is not None:
        await services.jobs.close(grace_s=services.settings.shutdown_grace_s)
    if services.live_records is not None:
        await services.live_records.close()
    if services.engine is not None:
        await services.engine.close()
    if services.llm is not None:
        await services.llm.close()
    if services.search_index is not None:
        try:
            await asyncio.wait_for(services.search_index.close(), services.settings.shutdown_grace_s)
        except Exception as exc:
            log.warning("explanations not yet in the search index at shutdown: %s", exc)
    if services.embedder is not None:
        await services.embedder.close()
    await services.reader.store.close()
