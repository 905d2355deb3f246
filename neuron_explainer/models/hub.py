"""Where a HuggingFace model's weights come from: the local HF cache, or the hub when it can be reached.

Imports no torch, so the command line can judge in a second, before the port's first request and the
model's minutes, whether ``--model_name gpt2-small`` can load at all. A model missing from the cache is
fetched only when the hub answers within ``PROBE_TIMEOUT_S``; otherwise the load fails at once with what
is missing and how to provide it (transformers would retry for half a minute, then raise an ``OSError``
that names neither the cache nor the fix). ``HF_HUB_OFFLINE=1`` skips the probe: missing is missing.
"""

from __future__ import annotations

import logging
import os
import threading
import urllib.error
import urllib.request
from pathlib import Path

from huggingface_hub import try_to_load_from_cache

from neuron_explainer.errors import ModelNotLoaded

log = logging.getLogger(__name__)

HF_IDS = {
    "gpt2-small": "gpt2",
    "gpt2-medium": "gpt2-medium",
    "gpt2-large": "gpt2-large",
    "gpt2-xl": "gpt2-xl",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROBE_TIMEOUT_S = 3.0


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def cached_snapshot(hf_id: str) -> str | None:
    """The cached snapshot folder of ``hf_id`` when it holds a config and weights."""
    config = try_to_load_from_cache(hf_id, "config.json", cache_dir=str(hf_cache_dir()))
    if isinstance(config, str):
        folder = Path(config).parent
        if any((folder / w).is_file() for w in WEIGHT_FILES):
            return str(folder)
    return None


def hub_unreachable_reason(timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """``None`` when the hub answers an HTTP request (any status) within ``timeout_s``; else why not.

    Runs in a daemon thread joined with a timeout, because name resolution ignores socket timeouts."""
    outcome: list[str | None] = []

    def probe() -> None:
        request = urllib.request.Request(hub_endpoint() + "/api/models/gpt2", method="HEAD")
        try:
            urllib.request.urlopen(request, timeout=timeout_s).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # it answered
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            outcome.append(str(reason) or type(exc).__name__)

    thread = threading.Thread(target=probe, name="hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout_s:.0f} s"


def resolve_hf(name: str, hf_id: str) -> str:
    """A local snapshot folder for ``hf_id`` if cached; else the id itself when the hub can be reached."""
    folder = cached_snapshot(hf_id)
    if folder is not None:
        return folder
    cache = hf_cache_dir()
    how = (
        f"download it once on a machine with network access (`huggingface-cli download {hf_id}`, or start "
        f"this server there) and copy {cache} here (or point $HF_HOME / $HF_HUB_CACHE at a copy), or pass a "
        "local checkpoint folder as --model_name"
    )
    fields = {"model": name, "hf_id": hf_id, "cache_dir": str(cache)}
    if offline():
        raise ModelNotLoaded(
            f"model {name} (HuggingFace id {hf_id!r}) is not in the HuggingFace cache {cache} and HF_HUB_OFFLINE "
            f"is set; unset HF_HUB_OFFLINE to download it, or {how}",
            **fields,
        )
    reason = hub_unreachable_reason()
    if reason is not None:
        raise ModelNotLoaded(
            f"model {name} (HuggingFace id {hf_id!r}) is not in the HuggingFace cache {cache} and the hub at "
            f"{hub_endpoint()} cannot be reached ({reason}); {how}",
            **fields,
            endpoint=hub_endpoint(),
        )
    log.info("model %s not in %s: downloading %s from %s", name, cache, hf_id, hub_endpoint())
    return hf_id
