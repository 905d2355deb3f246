"""Batches reads of stored records: one blob read per node per request, all nodes concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from neuron_explainer.nodes import NodeId
from neuron_explainer.storage.reader import RecordReader, StoredRecord

Key = NodeId
Result = StoredRecord


def record_loader(reader: RecordReader) -> DataLoader[Key, Result]:
    async def load(keys: Sequence[Key]) -> list[Result | BaseException]:
        return list(await asyncio.gather(*(reader.get_record(k) for k in keys), return_exceptions=True))

    return DataLoader(load_fn=load)  # type: ignore[arg-type]
