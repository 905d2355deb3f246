"""``InferenceBackend``: what the server asks of whatever runs the model.

Two implementations the resolvers cannot tell apart: the in-process ``InferenceEngine`` (one worker thread
owns the model) and, with ``--inference_backend ray``, a Ray Serve deployment whose replicas each own one.
Importing this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from neuron_explainer.inference.requests import ForwardRequest, ForwardResult
    from neuron_explainer.models.loaded_model import LoadedModel

T = TypeVar("T")


class InferenceBackend(Protocol):
    # Read-only properties: a plain attribute satisfies them, and so does a wrapper (``BoundedBackend``).
    @property
    def model(self) -> LoadedModel:
        """The model as the server process sees it: names, shapes, tokenizer and the tensors live fields read
        (under Ray a view without weights, ``models.facts.model_view``)."""
        ...

    @property
    def max_batch_size(self) -> int: ...

    @property
    def max_wait_s(self) -> float: ...

    @property
    def in_process(self) -> bool:
        """Whether ``call`` runs ``fn`` in this process. When False, ``fn`` is pickled to the process that holds
        the model and only its return value comes back: it must be a pure function of the model."""
        ...

    @property
    def forward_count(self) -> int:
        """Forward passes run since start (an out-of-memory retry counts each smaller pass; under Ray,
        summed over the replicas as of their latest replies)."""
        ...

    @property
    def backward_count(self) -> int:
        """Backward passes run since start (one per batch of requests that need gradients)."""
        ...

    @property
    def oom_count(self) -> int: ...

    async def run(self, request: ForwardRequest) -> ForwardResult:
        """One request's result, batched with whatever else is pending; exactly one result or one error."""
        ...

    async def call(self, fn: Callable[[LoadedModel], T]) -> T:
        """``fn(model)`` where the model lives, between batches (e.g. a batch of a live dataset layer)."""
        ...

    async def close(self) -> None: ...
