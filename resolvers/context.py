"""The per-request ``Context`` and the long-lived ``Services`` it carries.

``Services`` is built once by the composition root (``activation_server/main.py``) inside the
Starlette lifespan; ``Context`` is built per request by ``build_context`` and holds fresh DataLoaders,
so nothing cached in a loader outlives its request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from neuron_explainer.models.shapes import KNOWN_SHAPES, ModelShape
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.settings import ServerSettings
from neuron_explainer.storage.datasets import DatasetRegistry
from neuron_explainer.storage.reader import RecordReader
from resolvers.loaders import Loaders


@dataclass
class Services:
    """Everything long-lived a resolver may use. Optional parts are ``None`` when not running."""

    settings: ServerSettings
    reader: RecordReader
    registry: DatasetRegistry
    model: Any | None = None
    """``LoadedModel`` when ``--run_model`` is on (typed loosely so the read path has no torch import cost)."""
    engine: Any | None = None
    llm: Any | None = None
    jobs: Any | None = None
    response_cache: Any | None = None
    """Whole-result cache for queries over immutable stored data (``schema.response_cache``)."""
    policy: Any | None = None
    """``schema.guard.RequestPolicy``: API key, cost budget, rate limits (None: no limits, as in core tests)."""
    extras: dict[str, Any] = field(default_factory=dict)
    _ae_kinds: tuple[tuple[int, int], dict[str, NodeKind]] | None = field(default=None, repr=False)

    def shape(self, model_name: str) -> ModelShape | None:
        """Bounds for node ids: the loaded model's own config first, then the known shapes."""
        if self.model is not None and getattr(self.model, "name", None) == model_name:
            return self.model.shape  # type: ignore[no-any-return]
        return KNOWN_SHAPES.get(model_name)

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
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] | None = None
    cacheable: bool = True
    """Cleared by any resolver whose value came from somewhere mutable (live model, explanations)."""


def build_context(services: Services, request: Any = None, response: Any = None) -> Context:
    return Context(
        services=services,
        loaders=Loaders.create(services.reader, services.engine),
        request_id=uuid.uuid4().hex[:12],
        request=request,
        response=response,
    )
