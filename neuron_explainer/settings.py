"""Server settings: every knob the command line sets, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DATA_ROOT = "https://openaipublic.blob.core.windows.net/neuron-explainer/"
LOCALHOST_ORIGINS = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


@dataclass(frozen=True)
class ServerSettings:
    host_name: str = "localhost"
    port: int = 80
    model_name: str = "gpt2-small"
    mlp_autoencoder_name: str | None = None
    attn_autoencoder_name: str | None = None
    run_model: bool = True
    neuron_method: str = "baseline"
    attention_head_method: str = "baseline"
    cuda_memory_debugging: bool = False
    max_batch_size: int = 16
    """Most distinct forward requests the inference engine runs as one padded batch (1 = batching off)."""
    max_batch_wait_ms: float = 0.0
    torch_threads: int = 0
    """Intra-op threads of the model's CPU work; 0: one fewer than the cores (the event loop keeps one)."""
    """How long the engine may hold a request hoping for batch-mates (0: requests arriving together still share)."""
    data_root: str = DEFAULT_DATA_ROOT
    write_root: str | None = None
    """Where the server writes (scored explanations, live records); reads look here first. None: data_root."""
    allowed_origins: tuple[str, ...] = ()
    """Exact origins or regexes; empty means any localhost origin, as the original server allowed."""
    cache_bytes: int = 256 * 1024 * 1024
    max_concurrent_reads: int = 64
    build_demo_dataset: bool = False
    """Build the demo dataset into ``data_root`` on first start (the embedded default does)."""
    llm_base_url: str | None = None
    """An OpenAI-protocol endpoint (``.../v1``); None = api.openai.com."""
    llm_api_key_env: str = "OPENAI_API_KEY"
    """The environment variable holding the key (never the key itself: settings get logged)."""
    explainer_model: str = "gpt-4o"
    simulator_model: str = "gpt-4o"
    llm_concurrency: int = 8
    """LLM calls in flight at once over all jobs."""
    llm_timeout_s: float = 60.0
    llm_max_retries: int = 5
    """Retries of a 429/5xx/timeout/connection error, with exponential backoff from ``llm_backoff_s``."""
    llm_backoff_s: float = 1.0
    max_concurrent_jobs: int = 4
    """Explain/score jobs running at once; more wait as ``QUEUED``."""
    max_query_depth: int = 12
    """Deepest selection nesting a document may have (strawberry ``QueryDepthLimiter``)."""
    max_aliases: int = 200
    max_query_tokens: int = 20000
    """Parser tokens per document (strawberry ``MaxTokensLimiter``): bounds parse time of huge documents."""
    max_request_cost: int = 100_000
    """Per-request budget in cost units (``schema.cost``: a stored record = 1, a live prompt token per node
    = 1, an LLM call = 100); over it: ``LIMIT_EXCEEDED`` before anything runs. 0 = no budget."""
    api_key: str | None = field(default=None, repr=False)
    """Required as ``Authorization: Bearer <key>`` for mutations and subscriptions; None = open server."""
    require_auth_for_all: bool = False
    """With ``api_key``: every operation needs the key, queries too."""
    llm_rate_limit_per_minute: float = 60.0
    """LLM-calling explain/score mutations per API key (or client address) per minute, token bucket; 0 = unlimited."""
    shutdown_grace_s: float = 5.0
    """On SIGTERM running jobs get this long to finish before they are marked interrupted."""
    persist_jobs: bool = True
    """Keep each job's event log under ``_jobs/`` in the data root, so jobs survive a restart."""
    extra: dict[str, str] = field(default_factory=dict)
