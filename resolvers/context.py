"""The per-request ``Context`` and the long-lived ``Services`` it carries.

``Services`` is built once by the composition root (``activation_server/services.py``) inside the
Starlette lifespan; ``Context`` is built per request by ``build_context`` and holds fresh DataLoaders,
so nothing cached in a loader outlives its request.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from neuron_explainer.models.shapes import AUTOENCODER_LATENTS, KNOWN_SHAPES, ModelShape
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.resolvers.live_records import LiveRecordBuilder
from neuron_explainer.resolvers.loaders import Loaders
from neuron_explainer.settings import ServerSettings
from neuron_explainer.storage.datasets import DatasetRegistry
from neuron_explainer.storage.reader import RecordReader

if TYPE_CHECKING:  # torch, transformer-lens and openai stay unimported until a service needs them
    import torch

    from neuron_explainer.explanations.embeddings import SentenceEmbedder
    from neuron_explainer.explanations.llm import LlmClient
    from neuron_explainer.explanations.search_index import ExplanationIndex
    from neuron_explainer.inference.backend import InferenceBackend
    from neuron_explainer.inference.pass_cache import PassCache
    from neuron_explainer.jobs import JobManager
    from neuron_explainer.models.loaded_model import LoadedModel
    from neuron_explainer.storage.cache import ByteLRU


@dataclass
class Services:
    """Everything long-lived a resolver may use. Optional parts are ``None`` when not running."""

    settings: ServerSettings
    reader: RecordReader
    """Stored records and explanations; owns the one dataset registry (``registry``)."""
    model: LoadedModel | None = None
    engine: InferenceBackend | None = None
    passes: PassCache | None = None
    """Recent pass results across requests (set when a model runs): clicking through one prompt pays one pass."""
    lens: ByteLRU[tuple[str, str, str], torch.Tensor] | None = None
    """Logit-lens vocabulary scores per (node, direction, path), set when a model runs: computed once per node."""
    llm: LlmClient | None = None
    """``None`` without an API key: LLM methods answer ``LLM_NOT_CONFIGURED``."""
    jobs: JobManager | None = None
    embedder: SentenceEmbedder | None = None
    """The local sentence-embedding model (``embedding`` scorer, search); loads on first use."""
    search_index: ExplanationIndex | None = None
    """Stored explanations by meaning, kept in the store (``Query.searchExplanations``)."""
    live_records: LiveRecordBuilder | None = None
    """Set when a model runs: records no dataset has are computed live, a layer at a time."""
    memory_snapshot: Callable[[], str] | None = None
    """Set with ``--cuda_memory_debugging True`` on a running model: writes a snapshot, returns its path."""
    _ae_kinds: tuple[tuple[int, int], dict[str, NodeKind]] | None = field(default=None, repr=False)

    @property
    def registry(self) -> DatasetRegistry:
        return self.reader.registry

    def shape(self, model_name: str) -> ModelShape | None:
        """Bounds for node ids: the loaded model's own config first, then the known shapes."""
        if self.model is not None and self.model.name == model_name:
            return self.model.shape
        return KNOWN_SHAPES.get(model_name)

    def latent_count(self, autoencoder: str) -> int | None:
        """Latents of an autoencoder: the loaded one's own count first, then the known ones."""
        if self.model is not None:
            for ae in self.model.autoencoders.values():
                if ae.name == autoencoder:
                    return ae.n_latents
        return AUTOENCODER_LATENTS.get(autoencoder)

    def autoencoder_kinds(self) -> dict[str, NodeKind]:
        key = (id(self.registry), id(self.model))  # parsed on every node id: built once per registry/model
        if self._ae_kinds is None or self._ae_kinds[0] != key:
            kinds = self.registry.autoencoder_kinds()
            if self.model is not None:  # the loaded model's autoencoders, whatever their names
                kinds.update({ae.name: kind for kind, ae in self.model.autoencoders.items()})
            self._ae_kinds = (key, kinds)
        return self._ae_kinds[1]

    def parse_node_id(self, text: str) -> NodeId:
        return NodeId.parse(text, self.autoencoder_kinds())


@dataclass
class Context:
    services: Services
    loaders: Loaders
    request_id: str
    request: HTTPConnection | None = None
    """The HTTP request or the WebSocket of a subscription (``None`` for work started by the server itself)."""
    response: Response | WebSocket | None = None
    connection_params: dict[str, object] | None = None
    cacheable: bool = True
    """Cleared by any resolver whose value came from somewhere mutable (live model, explanations)."""
    caller: str | None = None
    """Who asks (a hash of the API key, else the client address), set by the request policy; the
    per-caller quota of jobs in flight is kept against it."""


def build_context(
    services: Services, request: HTTPConnection | None = None, response: Response | WebSocket | None = None
) -> Context:
    return Context(
        services=services,
        loaders=Loaders.create(services.reader, services.engine, services.passes),
        request_id=uuid.uuid4().hex[:12],
        request=request,
        response=response,
    )
