"""Search over stored explanations by meaning: a sentence-embedding index kept in the store beside them.

Layout under ``explanation-index/{model}/`` of the store (``model`` is the embedding model's name):
``manifest.json`` lists the live segments (``{"segments": [name, ...]}``, written with an ETag
compare-and-swap), and each ``segments/{name}.seg`` is immutable, written create-only: one JSON line
``{"dim": D, "entries": [{"node", "text", "method", "score", "dataset", "stamp"}, ...]}`` then the
entries' float32 vectors (``[n, D]``, little-endian, L2-normalised). Every server on the store sees the
same index: a search first re-reads the manifest (at most every ``refresh_s``) and loads the segments it
has not seen; a segment, once loaded, is never read again. Storing explanations appends a segment, so
the index grows as they are stored; when the manifest lists ``compact_at`` segments, the writer that
reaches it merges them into one (old segment blobs stay, unreferenced: the store has no delete).

One entry per (node, explanation text), with the score of every method it was stored under (the newest
``stamp`` wins per method). Search is exact: the cosine similarity of the query to every entry that
passes the filters (one matrix-vector product, on a worker thread), top ``first`` by similarity.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from neuron_explainer.errors import BadInput, CorruptBlob, UpstreamUnavailable
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.storage.base import BlobStore, PreconditionFailed

log = logging.getLogger(__name__)
ROOT = "explanation-index"
METHOD_ORDER = ("baseline", "all-at-once", "detection", "fuzzing", "embedding", "token-lookup")
"""Which method's score a hit reports when it has several and no ``method`` was asked for."""
MAX_FIRST = 100


@dataclass(frozen=True, slots=True)
class IndexEntry:
    node: str
    text: str
    method: str
    score: float | None
    dataset: str
    stamp: int = 0
    """Nanoseconds since the epoch when stored (0: now); the newest score of a method wins."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    node: str
    text: str
    similarity: float
    """Cosine similarity of the query and the explanation text, in [-1, 1]."""
    method: str
    score: float | None
    scores: dict[str, float | None]
    """Every method this text was scored with on this node."""
    dataset: str


@dataclass
class _Row:
    node: str
    text: str
    scores: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    """method -> (stamp, score)."""
    dataset: str = ""


def _node_parts(node: str) -> tuple[str, str, int]:
    """(model, kind or autoencoder, layer) of a node id ``model/kind/layer/index``."""
    parts = node.split("/")
    if len(parts) < 4 or not parts[-2].lstrip("-").isdigit():
        raise BadInput(f"not a node id: {node!r}", node=node)
    return "/".join(parts[:-3]), parts[-3], int(parts[-2])


def encode_segment(entries: Sequence[IndexEntry], vectors: np.ndarray) -> bytes:
    """``vectors``: ``[len(entries), D]`` float32."""
    header = {
        "dim": int(vectors.shape[1]),
        "entries": [
            {
                "node": e.node,
                "text": e.text,
                "method": e.method,
                "score": e.score,
                "dataset": e.dataset,
                "stamp": e.stamp,
            }
            for e in entries
        ],
    }
    return json.dumps(header, ensure_ascii=False).encode() + b"\n" + np.ascontiguousarray(vectors, "<f4").tobytes()


def decode_segment(data: bytes, blob: str) -> tuple[list[IndexEntry], np.ndarray]:
    try:
        line, _, body = data.partition(b"\n")
        header = json.loads(line)
        dim = int(header["dim"])
        entries = [
            IndexEntry(str(e["node"]), str(e["text"]), str(e["method"]), e["score"], str(e["dataset"]), int(e["stamp"]))
            for e in header["entries"]
        ]
        vectors = np.frombuffer(body, dtype="<f4").reshape(len(entries), dim).astype(np.float32)
    except (ValueError, KeyError, TypeError, struct.error) as e:
        raise CorruptBlob(f"search index segment {blob} does not parse: {e}", blob=blob) from e
    return entries, vectors


class ExplanationIndex:
    """``await index.add(entries)``, ``await index.search(text, first, ...)``; one per server and store."""

    def __init__(
        self, store: BlobStore, embedder: SentenceEmbedder, *, refresh_s: float = 1.0, compact_at: int = 64
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.refresh_s = refresh_s
        self.compact_at = compact_at
        self.prefix = f"{ROOT}/{embedder.name}"
        self._rows: list[_Row] = []
        self._by_key: dict[tuple[str, str], int] = {}
        self._vectors = np.zeros((0, embedder.dim), dtype=np.float32)  # [capacity, D]; rows < len(_rows) valid
        self._layers = np.zeros(0, dtype=np.int32)  # [capacity]
        self._models = np.zeros(0, dtype=np.int32)  # [capacity], codes into _model_codes
        self._kinds = np.zeros(0, dtype=np.int32)  # [capacity], codes into _kind_codes
        self._model_codes: dict[str, int] = {}
        self._kind_codes: dict[str, int] = {}
        self._loaded: set[str] = set()
        self._checked_at = -1e9
        self._lock = asyncio.Lock()
        self._pending: list[IndexEntry] = []
        self._indexer: asyncio.Task[None] | None = None
        self.failures = 0
        """Background additions that failed (logged; the rows they came from are stored regardless)."""

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def manifest_path(self) -> str:
        return f"{self.prefix}/manifest.json"

    # ---- reading ---------------------------------------------------------------------------------------

    async def refresh(self, force: bool = False) -> None:
        """Load what other servers (or earlier processes) added since we last looked."""
        if not force and time.monotonic() - self._checked_at < self.refresh_s:
            return
        async with self._lock:
            names, _ = await self._manifest()
            await self._load_segments(names)
            self._checked_at = time.monotonic()

    async def _manifest(self) -> tuple[list[str], str | None]:
        found = await self.store.get_with_etag(self.manifest_path)
        if found is None:
            return [], None
        try:
            names = [str(n) for n in json.loads(found[0])["segments"]]
        except (ValueError, KeyError, TypeError) as e:
            raise CorruptBlob(f"search index manifest {self.manifest_path} does not parse: {e}") from e
        return names, found[1]

    async def _load_segments(self, names: Sequence[str]) -> None:
        for name in names:
            if name in self._loaded:
                continue
            path = f"{self.prefix}/segments/{name}.seg"
            data = await self.store.get(path)
            if data is None:
                raise CorruptBlob(f"search index segment {path} is listed but missing", blob=path)
            entries, vectors = await asyncio.to_thread(decode_segment, data, path)
            self._apply(entries, vectors)
            self._loaded.add(name)

    def _apply(self, entries: Sequence[IndexEntry], vectors: np.ndarray) -> None:
        new = [k for k, e in enumerate(entries) if (e.node, e.text) not in self._by_key]
        self._grow(len(self._rows) + len(new))
        for k, e in enumerate(entries):
            key = (e.node, e.text)
            row_index = self._by_key.get(key)
            if row_index is None:
                model, kind, layer = _node_parts(e.node)
                row_index = len(self._rows)
                self._rows.append(_Row(e.node, e.text, {}, e.dataset))
                self._by_key[key] = row_index
                self._vectors[row_index] = vectors[k]
                self._layers[row_index] = layer
                self._models[row_index] = self._model_codes.setdefault(model, len(self._model_codes))
                self._kinds[row_index] = self._kind_codes.setdefault(kind, len(self._kind_codes))
            row = self._rows[row_index]
            previous = row.scores.get(e.method)
            if previous is None or previous[0] <= e.stamp:
                row.scores[e.method] = (e.stamp, e.score)
                row.dataset = e.dataset

    def _grow(self, size: int) -> None:
        capacity = len(self._layers)
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity, 1024)
        # new arrays: a search running on a worker thread keeps reading the old ones
        vectors = np.zeros((capacity, self.embedder.dim), dtype=np.float32)
        vectors[: len(self._rows)] = self._vectors[: len(self._rows)]
        self._vectors = vectors
        for name in ("_layers", "_models", "_kinds"):
            old = getattr(self, name)
            grown = np.zeros(capacity, dtype=np.int32)
            grown[: len(self._rows)] = old[: len(self._rows)]
            setattr(self, name, grown)

    # ---- writing ---------------------------------------------------------------------------------------

    def add_soon(self, entries: Sequence[IndexEntry]) -> None:
        """Queue ``entries`` for one background task to ``add`` (so a job does not wait for the embedding
        model); this process's searches wait for the queue first, other servers see them on refresh."""
        self._pending.extend(entries)
        if self._indexer is None or self._indexer.done():
            self._indexer = asyncio.create_task(self._index_pending(), name="explanation index")

    async def _index_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await self.add(batch)
            except Exception as e:  # the explanations are stored; `neuron-explainer import` or a rescore re-adds
                self.failures += 1
                log.warning("could not add %d explanations to the search index: %s", len(batch), e)

    async def flush(self) -> None:
        """Wait until everything queued by ``add_soon`` is in the index."""
        while self._indexer is not None and not self._indexer.done():
            await asyncio.shield(self._indexer)

    async def close(self) -> None:
        """Finish the queued additions (bounded by the caller's shutdown)."""
        await self.flush()

    async def add(self, entries: Sequence[IndexEntry]) -> None:
        """Embed the texts the index does not hold yet and append one segment with ``entries``."""
        if not entries:
            return
        await self.refresh()
        missing = sorted({e.text for e in entries if (e.node, e.text) not in self._by_key})
        embedded = dict(zip(missing, await self.embedder.embed(missing), strict=True)) if missing else {}
        vectors = np.stack(
            [embedded[e.text] if e.text in embedded else self._vectors[self._by_key[(e.node, e.text)]] for e in entries]
        )
        await self.add_vectors(entries, vectors)

    async def add_vectors(self, entries: Sequence[IndexEntry], vectors: np.ndarray) -> None:
        """Append one segment of already-embedded entries (``vectors``: ``[len(entries), D]``, unit rows)."""
        now = time.time_ns()
        stamped = [e if e.stamp else IndexEntry(e.node, e.text, e.method, e.score, e.dataset, now) for e in entries]
        name = f"{now:020d}-{uuid.uuid4().hex[:12]}"
        data = await asyncio.to_thread(encode_segment, stamped, vectors)
        await self.store.put(f"{self.prefix}/segments/{name}.seg", data, if_match="")
        async with self._lock:
            names = await self._update_manifest(lambda current: [*current, name])
            self._apply(stamped, vectors)
            self._loaded.add(name)
            await self._load_segments(names)
            if len(names) >= self.compact_at:
                await self._compact(names)

    async def _update_manifest(self, change: object, attempts: int = 50) -> list[str]:
        assert callable(change)
        for attempt in range(attempts):
            current, etag = await self._manifest()
            updated = change(current)
            if updated is None:
                return current
            body = json.dumps({"segments": updated}).encode()
            try:
                await self.store.put(self.manifest_path, body, if_match=etag if etag is not None else "")
                return list(updated)
            except PreconditionFailed:
                await asyncio.sleep(min(0.2, 0.005 * 2**attempt))
        raise UpstreamUnavailable(f"{self.manifest_path} kept changing: gave up after {attempts} tries")

    async def _compact(self, names: list[str]) -> None:
        """Merge the listed segments (all loaded) into one, and swap them for it in the manifest."""
        entries: list[IndexEntry] = []
        rows: list[int] = []
        for key, index in self._by_key.items():
            row = self._rows[index]
            for method, (stamp, score) in row.scores.items():
                entries.append(IndexEntry(key[0], key[1], method, score, row.dataset, stamp))
                rows.append(index)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}-merged"
        data = await asyncio.to_thread(encode_segment, entries, self._vectors[rows])
        await self.store.put(f"{self.prefix}/segments/{name}.seg", data, if_match="")
        merged = set(names)

        def swap(current: list[str]) -> list[str] | None:
            if not merged <= set(current):
                return None  # someone else compacted first
            return [name, *(n for n in current if n not in merged)]

        await self._update_manifest(swap)
        self._loaded.add(name)

    # ---- searching -------------------------------------------------------------------------------------

    async def search(
        self,
        text: str,
        first: int = 10,
        *,
        model: str | None = None,
        kind: str | None = None,
        layer: int | None = None,
        method: str | None = None,
    ) -> list[SearchHit]:
        if not text.strip():
            raise BadInput("the search text is empty", argument="text")
        if not 1 <= first <= MAX_FIRST:
            raise BadInput(f"first must be within 1..{MAX_FIRST}, got {first}", argument="first")
        await self.flush()
        query = (await self.embedder.embed([text]))[0]  # [D]
        await self.refresh()
        n = len(self._rows)
        rows, vectors = self._rows, self._vectors
        masks = (self._models[:n], self._kinds[:n], self._layers[:n])
        codes = (
            None if model is None else self._model_codes.get(model, -1),
            None if kind is None else self._kind_codes.get(kind, -1),
            layer,
        )
        picked = await asyncio.to_thread(_top, vectors[:n], query, masks, codes, rows, method, first)
        return [self._hit(rows[i], float(sim), method) for i, sim in picked]

    @staticmethod
    def _hit(row: _Row, similarity: float, method: str | None) -> SearchHit:
        chosen = method or next((m for m in METHOD_ORDER if m in row.scores), min(row.scores))
        return SearchHit(
            row.node,
            row.text,
            similarity,
            chosen,
            row.scores[chosen][1],
            {m: s for m, (_, s) in row.scores.items()},
            row.dataset,
        )

    def entries(self) -> list[SearchHit]:
        """Every (node, text) with its scores (similarity 0): for comparing scorers over the stored nodes."""
        return [self._hit(row, 0.0, None) for row in self._rows]


def _top(
    vectors: np.ndarray,
    query: np.ndarray,
    masks: tuple[np.ndarray, np.ndarray, np.ndarray],
    codes: tuple[int | None, int | None, int | None],
    rows: list[_Row],
    method: str | None,
    first: int,
) -> list[tuple[int, float]]:
    """Indices and similarities of the best ``first`` rows passing the filters (exact, ``vectors @ query``)."""
    keep = np.ones(len(vectors), dtype=bool)
    for values, code in zip(masks, codes, strict=True):
        if code is not None:
            keep &= values == code
    if method is not None:
        keep &= np.fromiter((method in r.scores for r in rows[: len(vectors)]), dtype=bool, count=len(vectors))
    candidates = np.flatnonzero(keep)
    if candidates.size == 0:
        return []
    similarity = vectors[candidates] @ query if candidates.size < len(vectors) else vectors @ query  # [candidates]
    k = min(first, candidates.size)
    best = np.argpartition(-similarity, k - 1)[:k]
    best = best[np.argsort(-similarity[best], kind="stable")]
    return [(int(candidates[b]), float(similarity[b])) for b in best]
