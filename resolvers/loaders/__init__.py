"""Per-request DataLoaders, gathered in one ``Loaders`` made fresh for every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.reader import RecordReader, StoredExplanation, StoredRecord
from resolvers.loaders.explanations import explanations_loader
from resolvers.loaders.forward import Engine, ForwardLoader
from resolvers.loaders.records import record_loader


@dataclass
class Loaders:
    records: DataLoader[NodeId, StoredRecord]
    explanations: DataLoader[NodeId, list[StoredExplanation]]
    forward: ForwardLoader | None = None
    """Forward passes of the live model; ``None`` when no model runs."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Loaders added by other parts (e.g. the ``ForwardLoader``) keyed by name."""

    @classmethod
    def create(cls, reader: RecordReader, engine: Engine | None = None) -> Loaders:
        return cls(
            records=record_loader(reader),
            explanations=explanations_loader(reader),
            forward=ForwardLoader(engine) if engine is not None else None,
        )


__all__ = ["ForwardLoader", "Loaders"]
