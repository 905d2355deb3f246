"""The small typed family of errors a user can cause.

Each carries fields, not a formatted string, so the GraphQL layer can map it to an
``extensions.code`` and clients can branch on it. The core raises these; resolvers translate.
"""

from __future__ import annotations

from typing import Any, ClassVar


class NeuronExplainerError(Exception):
    """Base of every error a user can cause; ``code`` becomes ``extensions.code``."""

    code: ClassVar[str] = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def extensions(self) -> dict[str, Any]:
        """``extensions`` of the GraphQL error: the code, and the fields with camelCase keys (``job_id`` is
        ``jobId``), as every other GraphQL name."""
        return {"code": self.code, **{camel_case(k): v for k, v in self.fields.items() if v is not None}}


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class BadInput(NeuronExplainerError):
    """The request itself is wrong: malformed id, out-of-range node, empty prompt, ..."""

    code = "BAD_USER_INPUT"


class NotFound(NeuronExplainerError):
    """Every place that could hold the thing was tried and none had it."""

    code = "NOT_FOUND"


class ModelNotLoaded(NeuronExplainerError):
    """A live field was asked for while the server runs without a model (``--run_model False``)."""

    code = "MODEL_NOT_LOADED"


class UpstreamUnavailable(NeuronExplainerError):
    """Blob storage or the LLM endpoint could not be reached (or kept failing after retries)."""

    code = "UPSTREAM_UNAVAILABLE"


class LlmNotConfigured(NeuronExplainerError):
    """An LLM method was asked for but no API key / endpoint is configured."""

    code = "LLM_NOT_CONFIGURED"


class LlmBadReply(NeuronExplainerError):
    """The LLM kept answering in a shape we cannot parse, after the retries."""

    code = "LLM_BAD_REPLY"


class LimitExceeded(NeuronExplainerError):
    """A request is over a configured limit (cost budget, depth, rate, batch size, memory)."""

    code = "LIMIT_EXCEEDED"


class Unauthenticated(NeuronExplainerError):
    """Missing or wrong API key for an operation that requires one."""

    code = "UNAUTHENTICATED"


class CorruptBlob(NeuronExplainerError):
    """A blob exists but does not parse as the format its dataset promises; names the blob."""

    code = "CORRUPT_DATA"
