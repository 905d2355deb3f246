"""How Azure storage fails, said one way for both paths (the raw GET path and the SDK): when to retry,
and the ``UpstreamUnavailable`` a user sees, naming the location, the verb and the blob."""

from __future__ import annotations

import random
from dataclasses import dataclass

from azure.storage.blob.aio import LinearRetry

from neuron_explainer.errors import UpstreamUnavailable


@dataclass(frozen=True, slots=True)
class AzureRetry:
    """``1 + retry_total`` tries about ``backoff_s`` apart (±25%). The SDK's default waits 15, 18, 24 s
    between tries, so an unreachable account would hang a request for a minute; this fails in seconds."""

    retry_total: int = 2
    backoff_s: float = 0.5

    def sdk_policy(self) -> LinearRetry:
        return LinearRetry(
            backoff=self.backoff_s,  # type: ignore[arg-type]  # the SDK annotates int, uses float
            retry_total=self.retry_total,
            random_jitter_range=self.backoff_s / 2,  # type: ignore[arg-type]
        )

    def delays(self) -> list[float]:
        """Seconds to wait before each try (0 before the first)."""
        return [0.0] + [self.backoff_s * (0.75 + random.random() / 2) for _ in range(self.retry_total)]


def retryable(status: int) -> bool:
    return status >= 500 or status == 429


def service_error(
    location: str, verb: str, path: str, why: str, status: int, error_code: str | None = None
) -> UpstreamUnavailable:
    """The service answered, but not with what we asked: denied, a server error, or a 404 without an
    error code (Azure and Azurite always name theirs: a bare 404 is a proxy or a wrong host, and taking
    it for "no such blob" would hide the misconfiguration)."""
    if status in (401, 403):
        what = "access denied by"
    elif status == 404 and not error_code:
        what = "not answering as an Azure blob service:"
    else:
        what = "blob service error at"
    return UpstreamUnavailable(
        f"{what} {location} ({verb} {path!r}): {why}",
        location=location,
        blob=path,
        status=status,
        error_code=error_code,
    )


def unreachable(location: str, verb: str, path: str, cause: BaseException | None) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"cannot reach blob storage at {location} ({verb} {path!r}): {first_line(cause) if cause else 'no answer'}",
        location=location,
        blob=path,
    )


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
