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
    data_root: str = DEFAULT_DATA_ROOT
    allowed_origins: tuple[str, ...] = ()
    """Exact origins or regexes; empty means any localhost origin, as the original server allowed."""
    cache_bytes: int = 256 * 1024 * 1024
    max_concurrent_reads: int = 64
    build_demo_dataset: bool = False
    """Build the demo dataset into ``data_root`` on first start (the embedded default does)."""
    extra: dict[str, str] = field(default_factory=dict)
