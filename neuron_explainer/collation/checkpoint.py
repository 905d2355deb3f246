"""Accumulator checkpoints in the output store, so an interrupted build resumes where it stopped.

A checkpoint is one ``torch.save``d blob at ``_checkpoints/{run_key}.pt`` holding how many batches of
the main pass's plan are done, the quantile boundaries and every group's accumulator state. ``run_key``
hashes everything the state depends on (model, kinds, layers, corpus hash, sampling settings, batch size,
whether the pre-pass is reused, code version), so a checkpoint is only ever resumed by the run that would
have produced it. Because every update is a deterministic function of the state and the batch, a resumed
run ends in exactly the state of an uninterrupted one. The store has no delete: a finished run overwrites
its checkpoint with an empty blob, which reads as "no checkpoint".
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass

import torch

from neuron_explainer.errors import CorruptBlob
from neuron_explainer.storage.base import BlobStore

CHECKPOINT_PREFIX = "_checkpoints"


@dataclass
class Checkpoint:
    next_batch: int
    """Batches ``[0, next_batch)`` of the main pass's plan are in the state."""
    boundaries: dict[str, torch.Tensor]
    """Per group name, ``[n_nodes, 4]`` quantile boundaries."""
    groups: dict[str, dict[str, torch.Tensor]]
    """Per group name, ``LayerAccumulator.state()``."""


def checkpoint_path(run_key: str) -> str:
    return f"{CHECKPOINT_PREFIX}/{run_key}.pt"


async def load_checkpoint(store: BlobStore, run_key: str) -> Checkpoint | None:
    path = checkpoint_path(run_key)
    data = await store.get(path)
    if not data:
        return None
    return await asyncio.to_thread(_decode, data, f"{store.location.rstrip('/')}/{path}")


async def save_checkpoint(store: BlobStore, run_key: str, checkpoint: Checkpoint) -> None:
    data = await asyncio.to_thread(_encode, checkpoint)
    await store.put(checkpoint_path(run_key), data)


async def clear_checkpoint(store: BlobStore, run_key: str) -> None:
    await store.put(checkpoint_path(run_key), b"")


def _encode(checkpoint: Checkpoint) -> bytes:
    buffer = io.BytesIO()
    torch.save(
        {
            "next_batch": checkpoint.next_batch,
            "boundaries": checkpoint.boundaries,
            "groups": checkpoint.groups,
        },
        buffer,
    )
    return buffer.getvalue()


def _decode(data: bytes, blob: str) -> Checkpoint:
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return Checkpoint(int(obj["next_batch"]), dict(obj["boundaries"]), dict(obj["groups"]))
    except Exception as e:  # torch.load raises many types for a bad blob
        raise CorruptBlob(f"collation checkpoint {blob} does not load ({type(e).__name__}: {e})", blob=blob) from e
