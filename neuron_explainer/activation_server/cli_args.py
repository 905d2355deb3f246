"""The server's command line: every flag of the original (``fire`` style values such as ``--run_model False``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from neuron_explainer.settings import DEFAULT_DATA_ROOT, ServerSettings


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "y", "on"):
        return True
    if lowered in ("false", "0", "no", "n", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _optional(text: str) -> str | None:
    return None if text.strip().lower() in ("", "none", "null") else text


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="neuron-explainer", description="GraphQL activation server")
    p.add_argument("--host_name", default="localhost")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--model_name", default="gpt2-small")
    p.add_argument("--mlp_autoencoder_name", type=_optional, default=None)
    p.add_argument("--attn_autoencoder_name", type=_optional, default=None)
    p.add_argument("--run_model", type=_bool, default=True)
    p.add_argument("--neuron_method", default="baseline")
    p.add_argument("--attention_head_method", default="baseline")
    p.add_argument("--cuda_memory_debugging", type=_bool, default=False)
    p.add_argument("--max_batch_size", type=int, default=16,
                   help="most concurrent forward requests run as one padded batch; 1 turns batching off")
    p.add_argument("--max_batch_wait_ms", type=float, default=0.0,
                   help="how long a request may wait for batch-mates (default: none)")
    p.add_argument("--torch_threads", type=int, default=0,
                   help="torch intra-op threads for the model; 0: one fewer than the CPU cores, at least 1")
    p.add_argument("--data_root", default=DEFAULT_DATA_ROOT,
                   help="folder, az://account/container/prefix, https://account.blob.core.windows.net/container/prefix "
                        "or an Azurite URL; credentials from AZURE_STORAGE_CONNECTION_STRING")
    p.add_argument("--write_root", type=_optional, default=None,
                   help="a writable location (same forms as --data_root) for what the server writes: scored "
                        "explanations, live records; read before --data_root. Default: --data_root itself")
    p.add_argument("--allowed_origins", default="",
                   help="comma-separated CORS origins (regexes allowed); default: any localhost origin")
    p.add_argument("--cache_mb", type=int, default=256, help="memory for cached records")
    p.add_argument("--build_demo_dataset", type=_bool, default=False,
                   help="build the demo dataset into --data_root on first start if it has none")
    llm = p.add_argument_group("LLM (explanations and scoring)")
    llm.add_argument("--llm_base_url", type=_optional, default=os.environ.get("OPENAI_BASE_URL") or None,
                     help="OpenAI-protocol endpoint, e.g. http://localhost:8000/v1 for vLLM (env OPENAI_BASE_URL)")
    llm.add_argument("--llm_api_key_env", default="OPENAI_API_KEY",
                     help="environment variable holding the API key; unset or empty: LLM methods answer "
                          "LLM_NOT_CONFIGURED, no-LLM methods (top-tokens, token-lookup) still work")
    llm.add_argument("--explainer_model", default="gpt-4o")
    llm.add_argument("--simulator_model", default="gpt-4o")
    llm.add_argument("--llm_concurrency", type=int, default=8, help="LLM calls in flight at once")
    llm.add_argument("--llm_timeout_s", type=float, default=60.0, help="per call; slower counts as a timeout")
    llm.add_argument("--llm_max_retries", type=int, default=5, help="retries on 429/5xx/timeouts")
    llm.add_argument("--llm_backoff_s", type=float, default=1.0, help="first retry delay (doubles, with jitter)")
    llm.add_argument("--max_concurrent_jobs", type=int, default=4, help="explain/score jobs running at once")
    limits = p.add_argument_group("limits and authentication")
    limits.add_argument("--max_query_depth", type=int, default=12, help="deepest selection nesting")
    limits.add_argument("--max_aliases", type=int, default=200, help="aliases per document")
    limits.add_argument("--max_query_tokens", type=int, default=20000, help="parser tokens per document")
    limits.add_argument("--max_request_cost", type=int, default=100_000,
                        help="cost budget per request (record = 1, live prompt token x node = 1, LLM call = 100); "
                             "0: no budget")
    limits.add_argument("--api_key", type=_optional, default=None,
                        help="require 'Authorization: Bearer <key>' for mutations and subscriptions "
                             "(default: env NEURON_EXPLAINER_API_KEY; unset: open server)")
    limits.add_argument("--require_auth_for_all", type=_bool, default=False,
                        help="with an API key: queries need it too")
    limits.add_argument("--llm_rate_limit_per_minute", type=float, default=60.0,
                        help="LLM-calling explain/score mutations per key (or client address) per minute; 0: unlimited")
    limits.add_argument("--shutdown_grace_s", type=float, default=5.0,
                        help="on SIGTERM, how long running jobs may finish before being marked interrupted")
    limits.add_argument("--persist_jobs", type=_bool, default=True,
                        help="keep job event logs under _jobs/ in --data_root so jobs survive restarts")
    return p


def parse_settings(argv: Sequence[str] | None = None) -> ServerSettings:
    a = parser().parse_args(argv)
    origins = tuple(o.strip() for o in a.allowed_origins.split(",") if o.strip())
    return ServerSettings(
        host_name=a.host_name,
        port=a.port,
        model_name=a.model_name,
        mlp_autoencoder_name=a.mlp_autoencoder_name,
        attn_autoencoder_name=a.attn_autoencoder_name,
        run_model=a.run_model,
        neuron_method=a.neuron_method,
        attention_head_method=a.attention_head_method,
        cuda_memory_debugging=a.cuda_memory_debugging,
        max_batch_size=a.max_batch_size,
        max_batch_wait_ms=a.max_batch_wait_ms,
        torch_threads=a.torch_threads,
        data_root=a.data_root,
        write_root=a.write_root,
        allowed_origins=origins,
        cache_bytes=a.cache_mb * 1024 * 1024,
        build_demo_dataset=a.build_demo_dataset,
        llm_base_url=a.llm_base_url,
        llm_api_key_env=a.llm_api_key_env,
        explainer_model=a.explainer_model,
        simulator_model=a.simulator_model,
        llm_concurrency=a.llm_concurrency,
        llm_timeout_s=a.llm_timeout_s,
        llm_max_retries=a.llm_max_retries,
        llm_backoff_s=a.llm_backoff_s,
        max_concurrent_jobs=a.max_concurrent_jobs,
        max_query_depth=a.max_query_depth,
        max_aliases=a.max_aliases,
        max_query_tokens=a.max_query_tokens,
        max_request_cost=a.max_request_cost,
        api_key=a.api_key or os.environ.get("NEURON_EXPLAINER_API_KEY") or None,
        require_auth_for_all=a.require_auth_for_all,
        llm_rate_limit_per_minute=a.llm_rate_limit_per_minute,
        shutdown_grace_s=a.shutdown_grace_s,
        persist_jobs=a.persist_jobs,
    )
