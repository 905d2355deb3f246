"""Batches reads of a node's stored explanations across every explanation dataset that could hold them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.reader import RecordReader, StoredExplanation

Key = NodeId
Result = list[StoredExplanation]


def explanations_loader(reader: RecordReader) -> DataLoader[Key, Result]:
    async def load(keys: Sequence[Key]) -> list[Result | BaseException]:
        return list(await asyncio.gather(*(reader.get_explanations(k) for k in keys), return_exceptions=True))

    return DataLoader(load_fn=load)  # type: ignore[arg-type]
