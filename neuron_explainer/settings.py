"""Server settings: every knob of the command line, its default and its help, in one dataclass.

The CLI (``activation_server/cli_args.py``, through ``cli_flags.py``) is derived from these fields: a flag
is ``--<field name>``, its help, group and choices come from ``setting(...)``, its parser from the field's
type. Adding a knob is one field here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DATA_ROOT = "https://openaipublic.blob.core.windows.net/neuron-explainer/"
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


def setting(
    default: Any,
    help: str,
    *,
    group: str = "",
    env: str | None = None,
    secret: bool = False,
    choices: Sequence[str] | None = None,
    shown: str | None = None,
) -> Any:
    """A settings field: ``env`` names an environment variable read when the flag is not given; an empty
    ``group`` is the command's main group; ``shown`` is how ``--help`` describes the default, when its
    value says too little (``None`` meaning "all layers", say)."""
    metadata = {"help": help, "group": group, "env": env, "choices": choices, "shown": shown}
    return field(default=default, repr=not secret, metadata=metadata)


def required(help: str, *, group: str = "") -> Any:
    """A settings field the command line must give (no default)."""
    return field(metadata={"help": help, "group": group, "env": None, "choices": None, "shown": None})


_LOGS = "logs and monitoring"
_BATCH = "inference"
_RAY = "inference on Ray (--inference_backend ray; pip install 'neuron-explainer[ray]')"
_LLM = "LLM (explanations and scoring)"
_LIMITS = "limits and authentication"


@dataclass(frozen=True)
class ServerSettings:
    # ---- the original server's flags (same names, same defaults) ----
    host_name: str = setting("localhost", "interface to listen on")
    port: int = setting(80, "TCP port (the original's default; the README's examples use 8000)")
    model_name: str = setting("gpt2-small", "gpt2-small..gpt2-xl, tiny-gpt2, or a folder with a HF GPT-2 checkpoint")
    mlp_autoencoder_name: str | None = setting(None, "autoencoder on the MLP (e.g. ae-resid-delta-mlp-v4)")
    attn_autoencoder_name: str | None = setting(None, "autoencoder on attention (e.g. ae-resid-delta-attn-v4)")
    run_model: bool = setting(True, "load the model; False serves stored data only (live fields: MODEL_NOT_LOADED)")
    neuron_method: str = setting("baseline", "default explain/score method for neurons and latents")
    attention_head_method: str = setting("baseline", "default explain/score method for attention heads")
    cuda_memory_debugging: bool = setting(
        False, "record CUDA allocations of the running model; GET /dump_memory_snapshot writes them to a file"
    )

    # ---- logs and monitoring ----
    log_format: str = setting(
        "text",
        "text: one readable line per event; json: one JSON object per line (time, level, logger, message, "
        "requestId, ...)",
        group=_LOGS,
        choices=("text", "json"),
    )
    log_level: str = setting(
        "info", "least severe level logged", group=_LOGS, choices=("debug", "info", "warning", "error")
    )

    # ---- inference ----
    max_batch_size: int = setting(16, "most concurrent forward requests run as one padded batch; 1: off", group=_BATCH)
    max_queued_forwards: int = setting(
        1024,
        "live forward requests waiting or running at once; past it LIMIT_EXCEEDED with retryAfter (stored "
        "queries never wait behind them); 0: unbounded",
        group=_BATCH,
    )
    max_batch_wait_ms: float = setting(
        0.0, "how long a request may wait for batch-mates (requests arriving together share anyway)", group=_BATCH
    )
    torch_threads: int = setting(0, "torch intra-op threads; 0: one fewer than the cores, at least 1", group=_BATCH)
    pass_cache_mb: int = setting(
        256,
        "memory for recent pass results (activations, gradients) kept across requests, so opening node after node "
        "on one prompt and target runs one pass; 0: off",
        group=_BATCH,
    )
    inference_backend: str = setting(
        "local", "local: this process runs the model; ray: the replicas of a Ray Serve deployment do", group=_BATCH
    )

    # ---- inference on Ray ----
    ray_address: str | None = setting(
        None, "an existing Ray cluster: auto, host:6379 or ray://host:10001; none: start a local one", group=_RAY
    )
    ray_replicas: int = setting(1, "model replicas, each loading the model and batching what reaches it", group=_RAY)
    ray_gpus_per_replica: float = setting(0.0, "GPUs each replica reserves (fractions share a GPU)", group=_RAY)
    ray_cpus_per_replica: float = setting(
        1.0, "CPUs each replica reserves (also its torch threads unless --torch_threads)", group=_RAY
    )
    ray_replica_resources: str | None = setting(
        None, 'custom Ray resources each replica needs, as JSON, e.g. {"a100": 1} to pin replicas to nodes', group=_RAY
    )
    ray_app_name: str | None = setting(
        None,
        "use this running Ray Serve application (e.g. deployed by KubeRay's RayService, see deploy/) instead of "
        "deploying one named after the model flags",
        group=_RAY,
    )
    ray_connect_timeout_s: float = setting(
        5.0,
        "joining --ray_address: the TCP probe's timeout; Ray gets 3x this to answer, and a --ray_app_name "
        "application Serve is (re)starting 3x this to run",
        group=_RAY,
    )
    ray_request_timeout_s: float = setting(
        60.0, "longest a request waits for a replica's answer before UPSTREAM_UNAVAILABLE", group=_RAY
    )

    # ---- storage ----
    data_root: str = setting(
        DEFAULT_DATA_ROOT,
        "folder, az://account/container/prefix, https://account.blob.core.windows.net/container/prefix or an "
        "Azurite URL; credentials from AZURE_STORAGE_CONNECTION_STRING",
    )
    write_root: str | None = setting(
        None,
        "a writable location (same forms as --data_root) for what the server writes: scored explanations, live "
        "records; read before --data_root. Default: --data_root itself",
    )
    allowed_origins: tuple[str, ...] = setting(
        (), "comma-separated CORS origins (regexes allowed); default: any localhost origin, as the original"
    )
    cache_mb: int = setting(256, "memory for cached records and responses, in MiB")
    max_concurrent_reads: int = setting(64, "blob reads in flight at once")
    build_demo_dataset: bool = setting(False, "build the demo dataset into --data_root on first start if it has none")

    # ---- LLM ----
    llm_base_url: str | None = setting(
        None, "OpenAI-protocol endpoint, e.g. http://localhost:8000/v1 for vLLM", group=_LLM, env="OPENAI_BASE_URL"
    )
    llm_api_key_env: str = setting(
        "OPENAI_API_KEY",
        "environment variable holding the API key (never the key itself: settings get logged); unset or empty: "
        "LLM methods answer LLM_NOT_CONFIGURED, no-LLM methods (top-tokens, token-lookup) still work",
        group=_LLM,
    )
    explainer_model: str = setting("gpt-4o", "model that writes explanations", group=_LLM)
    simulator_model: str = setting("gpt-4o", "model that simulates activations from an explanation", group=_LLM)
    llm_concurrency: int = setting(8, "LLM calls in flight at once over all jobs", group=_LLM)
    llm_timeout_s: float = setting(60.0, "per call; slower counts as a timeout", group=_LLM)
    llm_max_retries: int = setting(5, "retries of a 429/5xx/timeout/connection error", group=_LLM)
    llm_backoff_s: float = setting(1.0, "first retry delay (doubles, with jitter)", group=_LLM)
    max_concurrent_jobs: int = setting(4, "explain/score jobs running at once; more wait as QUEUED", group=_LLM)
    max_jobs_per_caller: int = setting(
        32, "explain/score jobs one caller (key or client address) may have queued or running; 0: no quota", group=_LLM
    )

    # ---- limits and authentication ----
    max_body_bytes: int = setting(
        1024 * 1024, "largest HTTP request body and WebSocket message, in bytes; larger: 413", group=_LIMITS
    )
    max_query_depth: int = setting(12, "deepest selection nesting a document may have", group=_LIMITS)
    max_aliases: int = setting(200, "aliases per document", group=_LIMITS)
    max_query_tokens: int = setting(20000, "parser tokens per document (bounds parse time)", group=_LIMITS)
    max_request_cost: int = setting(
        100_000,
        "cost budget per request (stored record = 1, live prompt token x node = 1, LLM call = 100); over it: "
        "LIMIT_EXCEEDED before anything runs; 0: no budget",
        group=_LIMITS,
    )
    api_key: str | None = setting(
        None,
        "require 'Authorization: Bearer <key>' for mutations and subscriptions; unset: open server",
        group=_LIMITS,
        env="NEURON_EXPLAINER_API_KEY",
        secret=True,
    )
    require_auth_for_all: bool = setting(False, "with an API key: queries need it too", group=_LIMITS)
    llm_rate_limit_per_minute: float = setting(
        60.0, "LLM-calling explain/score mutations per key (or client address) per minute; 0: unlimited", group=_LIMITS
    )
    shutdown_grace_s: float = setting(
        5.0, "on SIGTERM, how long running jobs may finish before being marked interrupted", group=_LIMITS
    )
    persist_jobs: bool = setting(
        True, "keep job event logs under _jobs/ in the data root so jobs survive restarts", group=_LIMITS
    )
    job_lease_s: float = setting(
        15.0,
        "servers sharing a store: a job's server renews its lease every third of this; once it goes this long "
        "unrenewed another server takes the job over",
        group=_LIMITS,
    )
    job_logs_keep_days: float = setting(30.0, "delete finished jobs' logs older than this; 0: keep", group=_LIMITS)
    job_logs_keep: int = setting(10_000, "keep at most this many finished jobs' logs (newest); 0: all", group=_LIMITS)

    @property
    def cache_bytes(self) -> int:
        return self.cache_mb * 1024 * 1024
