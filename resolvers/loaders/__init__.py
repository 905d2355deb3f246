"""Per-request DataLoaders, gathered in one ``Loaders`` made fresh for every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from strawberry.dataloader import DataLoader

from neuron_explainer.nodes import NodeId
from neuron_explainer.resolvers.loaders.explanations import explanations_loader
from neuron_explainer.resolvers.loaders.forward import Engine, ForwardLoader
from neuron_explainer.resolvers.loaders.records import record_loader
from neuron_explainer.storage.reader import RecordReader, StoredExplanation, StoredRecord

if TYPE_CHECKING:
    from neuron_explainer.inference.pass_cache import PassCache


@dataclass
class Loaders:
    records: DataLoader[NodeId, StoredRecord]
    explanations: DataLoader[NodeId, list[StoredExplanation]]
    forward: ForwardLoader | None = None
    """Forward passes of the live model; ``None`` when no model runs."""

    @classmethod
    def create(cls, reader: RecordReader, engine: Engine | None = None, passes: PassCache | None = None) -> Loaders:
        return cls(
            records=record_loader(reader),
            explanations=explanations_loader(reader),
            forward=ForwardLoader(engine, cache=passes) if engine is not None else None,
        )


__all__ = ["ForwardLoader", "Loaders"]
