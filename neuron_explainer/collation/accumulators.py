"""Streaming, memory-bounded summaries of every node of one layer at once (the collation hot path).

A ``LayerAccumulator`` sees batches of per-sequence values ``[batch, width, n_nodes]`` (``width`` = tokens
for per-token nodes, flattened lower-triangle token pairs for attention heads) and keeps, per node:

- **top-K** sequences by their max value, exact; ties broken by the lower sequence (window) number.
- **a uniform random sample** of ``random_k`` sequences, drawn as the ``random_k`` smallest of a hashed key
  ``h(seed, group, node, sequence)`` ("bottom-k" sampling). The key depends on nothing but those four, so
  the sample is independent of batch size, batch order, resumption and sharding, and differs per node
  (the original's records say the same: independent across neurons).
- **per-quantile samples**: sequences are binned by their max value with per-node boundaries at the
  0.5, 0.9, 0.99 and 0.999 quantiles, bins ``(-inf, q50], (q50, q90], (q90, q99], (q99, q999], (q999, inf)``
  (a dead node's zeros land in the lowest bin); each bin keeps a bottom-k sample under a second hash.
  The boundaries must be known before the first update: the builder estimates them from the
  per-sequence maxima of a bounded, evenly spaced sample of windows in a pre-pass
  (``statistics.QuantileEstimator``, numpy's ``linear`` quantile method) and they are stored in the records.
- **moments** of every value seen (every token, or every lower-triangle token pair): mean, population
  variance (``ddof=0``), skewness ``g1 = m3 / m2**1.5`` and *excess* kurtosis ``g2 = m4 / m2**2 - 3`` —
  ``scipy.stats.skew`` / ``scipy.stats.kurtosis`` with their defaults (``bias=True, fisher=True``). The
  original's collation code is not public, so its convention cannot be checked; this one is stated.
  Per-batch central sums (centred on the batch mean, pairwise-summed in float32) are merged across
  batches in float64 with Chan/Pébay's pairwise update; agreement with a float64 brute force is ~1e-6.

Top-K and both samples are exactly mergeable (``merge_samples``): accumulators fed disjoint windows and
merged hold what one fed them all would. Moments merge by folding each batch's sums in plan order
(``update_samples`` returns them), which gives the same bits as one accumulator.

Memory per node is ``(top_k + random_k + 5 * quantile_k) * width`` float32 values plus a few scalars;
nothing else about the corpus is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from neuron_explainer.collation.statistics import QUANTILES, Moments, MomentSums, node_major, scratch
from neuron_explainer.collation.workers import one_thread

_EMPTY = torch.iinfo(torch.int64).max
"""Sequence number (and key) of an empty slot; sorts after every real one."""


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    """How much of each kind of sample a record keeps."""

    top_k: int = 64
    random_k: int = 32
    quantile_k: int = 8
    seed: int = 0


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class _KeyStream:
    """Deterministic pseudo-random int64 keys in [0, 2**63) per (node, sequence)."""

    def __init__(self, salt: str, n_nodes: int) -> None:
        digest = hashlib.sha256(salt.encode()).digest()
        self._salt = np.uint64(int.from_bytes(digest[:8], "little"))
        self._nodes = _mix(np.arange(n_nodes, dtype=np.uint64) ^ self._salt)  # [n]

    def keys(self, seqs: np.ndarray) -> torch.Tensor:  # -> [n, batch] int64
        seq_part = _mix(seqs.astype(np.uint64) + self._salt)  # [batch]
        mixed = _mix(self._nodes[:, None] ^ seq_part[None, :]) >> np.uint64(1)
        return torch.from_numpy(mixed.astype(np.int64))


_SEQ_LOW = (1 << 32) - 1
"""Window numbers below this fit the low half of a packed top-K sort key (``_EMPTY`` maps onto it)."""


def _packed(prim: torch.Tensor, seq: torch.Tensor) -> torch.Tensor:  # [r, c] float32, [r, c] -> [r, c] int64
    """One int64 per entry that orders exactly as ``(prim, seq)``, for float32 ``prim`` and window numbers
    below ``_SEQ_LOW``: the float's bits made order-preserving (``-0.0`` folded onto ``0.0``, as ``==`` does)
    in the high half, the window number in the low half."""
    bits = (prim + 0.0).view(torch.int32)
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: flip the magnitude so larger is larger
    return bits.to(torch.int64) * (1 << 32) + seq.clamp(max=_SEQ_LOW)


def _merge_order(
    prim: torch.Tensor,  # [r, k]  (sorted ascending by (prim, seq))
    seq: torch.Tensor,  # [r, k]
    new_prim: torch.Tensor,  # [r, c]
    new_seq: torch.Tensor,  # [r, c]
    one_sort: bool,
) -> torch.Tensor:  # [r, k] positions in cat([old, new]) of the k smallest, sorted by (prim, seq)
    """The stable sort by ``(prim, seq)``, done as one sort where that gives the same permutation.

    For float32 ``prim`` the caller vouches (``one_sort``) that every window number is in ``[0, _SEQ_LOW)``,
    so packed keys order exactly as the pair. For int64 keys (``one_sort``: no real key equals ``_EMPTY``)
    one sort by ``prim`` alone is checked instead: it is the pair's order unless two real keys tie within
    the first ``k + 1`` places (hashed 63-bit keys practically never do), and then the two stable passes,
    seq then prim, run."""
    k = prim.shape[1]
    all_prim = torch.cat([prim, new_prim], dim=1)
    if one_sort and prim.dtype == torch.float32:
        return torch.argsort(_packed(all_prim, torch.cat([seq, new_seq], dim=1)), dim=1, stable=True)[:, :k]
    if one_sort:
        by_prim = torch.argsort(all_prim, dim=1, stable=True)
        head = torch.gather(all_prim, 1, by_prim[:, : k + 1])  # [r, k + 1]
        if not bool(((head[:, 1:] == head[:, :-1]) & (head[:, 1:] != _EMPTY)).any()):
            return by_prim[:, :k]
    all_seq = torch.cat([seq, new_seq], dim=1)
    by_seq = torch.argsort(all_seq, dim=1, stable=True)
    by_prim = torch.argsort(torch.gather(all_prim, 1, by_seq), dim=1, stable=True)
    return torch.gather(by_seq, 1, by_prim)[:, :k]


class _Reservoir:
    """``k`` slots per row keeping the smallest ``(prim, seq)``; row ``r`` belongs to node ``r // groups``.

    ``prim``/``seq`` are kept sorted; the values stay where they were written and ``slot`` says where:
    a merge moves only the few newcomers' values (the hot path is the data movement, not the sort).
    """

    def __init__(self, n_nodes: int, k: int, width: int, dtype: torch.dtype, groups: int = 1) -> None:
        fill = torch.inf if dtype.is_floating_point else _EMPTY
        self._fill = fill
        rows = n_nodes * groups
        self.groups = groups
        self.prim = torch.full((rows, k), fill, dtype=dtype)
        self.seq = torch.full((rows, k), _EMPTY, dtype=torch.int64)
        self.slot = torch.arange(k, dtype=torch.int64).repeat(rows, 1)  # [rows, k] rank -> storage slot
        self.vals = torch.zeros((rows, k, width), dtype=torch.float32)  # [rows, slot, width]

    @property
    def worst(self) -> torch.Tensor:  # [rows]: a candidate must not be above this to get in
        if self.prim.shape[1] == 0:  # no slots: admit nothing (keys are >= 0, values finite)
            low = -torch.inf if self.prim.dtype.is_floating_point else -1
            return torch.full(self.prim.shape[:1], low, dtype=self.prim.dtype)
        return self.prim[:, -1]

    def offer(
        self,
        active: torch.Tensor,  # [rows] bool: rows that have a candidate not above ``worst``
        candidates: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        values: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],  # (batch_pos [m], node [m]) -> [m, width]
        one_sort: bool = False,
    ) -> None:
        """Merge this batch's candidates into the rows flagged ``active``.

        ``candidates(rows)`` gives ``(prim [r, batch], seq [r, batch])`` for those rows only (``seq`` is
        ``_EMPTY`` where a window is not a candidate), so a batch that changes little costs little.
        ``one_sort`` vouches for what :func:`_merge_order` needs to sort once.
        """
        k = self.prim.shape[1]
        if k == 0:
            return
        rows = active.nonzero().squeeze(1)  # [r]
        r = rows.numel()
        if r == 0:
            return
        everything = r == active.numel()
        pick = (lambda t: t) if everything else (lambda t: t.index_select(0, rows))
        old_prim, old_seq, old_slot = pick(self.prim), pick(self.seq), pick(self.slot)
        new_prim, new_seq = candidates(rows)
        # Keep only the candidates that can get in, packed to the left in batch order (a prefix sum says
        # where each goes), and only as many columns as the fullest row needs; the rest are padding.
        hope = ~((new_prim > old_prim[:, -1:]) | (new_seq == _EMPTY))  # [r, batch]
        rank = hope.cumsum(dim=1)  # [r, batch]
        counts = rank[:, -1:]  # [r, 1]
        n_cand = int(counts.max())
        if n_cand == 0:
            return
        batch = new_prim.shape[1]
        position = torch.zeros(r, n_cand + 1, dtype=torch.int64)  # last column: where the hopeless go
        position.scatter_(1, torch.where(hope, rank - 1, n_cand), torch.arange(batch).expand(r, batch))
        position = position[:, :n_cand]  # [r, c]
        padding = torch.arange(n_cand)[None, :] >= counts  # [r, c]
        new_prim = new_prim.gather(1, position).masked_fill(padding, self._fill)
        new_seq = new_seq.gather(1, position).masked_fill(padding, _EMPTY)
        order = _merge_order(old_prim, old_seq, new_prim, new_seq, one_sort)  # [r, k]
        kept = torch.zeros(r, k + n_cand, dtype=torch.bool)
        kept.scatter_(1, order, True)
        is_new = order >= k  # [r, k]
        freed = old_slot[~kept[:, :k]]  # row-major: the slots of evicted entries, row by row
        slot = torch.gather(old_slot, 1, order.clamp(max=k - 1))
        slot[is_new] = freed  # same count per row, same row-major order
        new_row, new_rank = is_new.nonzero(as_tuple=True)
        row = rows[new_row]
        batch_pos = position[new_row, order[new_row, new_rank] - k]
        source = values(batch_pos, torch.div(row, self.groups, rounding_mode="floor"))  # [m, width]
        self.vals.view(-1, self.vals.shape[2]).index_copy_(0, row * k + freed, source)
        merged_prim = torch.gather(torch.cat([old_prim, new_prim], 1), 1, order)
        merged_seq = torch.gather(torch.cat([old_seq, new_seq], 1), 1, order)
        if everything:
            self.prim, self.seq, self.slot = merged_prim, merged_seq, slot
        else:
            self.prim.index_copy_(0, rows, merged_prim)
            self.seq.index_copy_(0, rows, merged_seq)
            self.slot.index_copy_(0, rows, slot)

    def merge(self, other: _Reservoir) -> None:
        """Keep the ``k`` smallest ``(prim, seq)`` of both, per row: exactly what one reservoir offered both
        streams would hold, since each keeps the smallest of what it saw (windows seen by both: never)."""
        k, width = self.prim.shape[1], self.vals.shape[2]
        if k == 0:
            return
        order = _merge_order(self.prim, self.seq, other.prim, other.seq, one_sort=False)  # [rows, k]

        def by_rank(r: _Reservoir) -> torch.Tensor:  # [rows, k, width], best first
            return torch.gather(r.vals, 1, r.slot[:, :, None].expand(-1, -1, width))

        values = torch.cat([by_rank(self), by_rank(other)], dim=1)
        self.vals = torch.gather(values, 1, order[:, :, None].expand(-1, -1, width)).contiguous()
        self.prim = torch.gather(torch.cat([self.prim, other.prim], 1), 1, order)
        self.seq = torch.gather(torch.cat([self.seq, other.seq], 1), 1, order)
        self.slot = torch.arange(k, dtype=torch.int64).repeat(self.prim.shape[0], 1)

    def kept(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """``(seqs [m], values [m, width])`` of one row, best first."""
        valid = self.seq[row] != _EMPTY
        return self.seq[row][valid].numpy(), self.vals[row][self.slot[row][valid]].numpy()

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{n}": getattr(self, n) for n in ("prim", "seq", "slot", "vals")}

    def load(self, prefix: str, state: dict[str, torch.Tensor]) -> None:
        for n in ("prim", "seq", "slot", "vals"):
            setattr(self, n, state[f"{prefix}.{n}"])


@dataclass(frozen=True, slots=True)
class NodeSummary:
    """What one node's record is made of; sequences are window numbers, values ``[k, width]``."""

    top_seqs: np.ndarray
    top_values: np.ndarray
    random_seqs: np.ndarray
    random_values: np.ndarray
    quantile_seqs: list[np.ndarray]
    quantile_values: list[np.ndarray]
    quantile_boundaries: list[float]
    mean: float
    variance: float
    skewness: float
    kurtosis: float


class LayerAccumulator:
    """Every node of one group (one kind, one layer): ``update`` per batch, ``summary`` per node at the end.

    ``group`` names the node group (e.g. ``"mlp_neuron/3"``) and salts the sampling keys, together with
    ``config.seed``. ``boundaries`` ``[n_nodes, 4]`` come from ``statistics.QuantileEstimator``.
    """

    def __init__(self, group: str, n_nodes: int, width: int, config: SamplingConfig, boundaries: torch.Tensor) -> None:
        if boundaries.shape != (n_nodes, len(QUANTILES)):
            raise ValueError(f"boundaries {tuple(boundaries.shape)} != ({n_nodes}, {len(QUANTILES)})")
        self.group, self.n_nodes, self.width, self.config = group, n_nodes, width, config
        self.boundaries = boundaries.to(torch.float64).contiguous()
        self.top = _Reservoir(n_nodes, config.top_k, width, torch.float32)
        self.random = _Reservoir(n_nodes, config.random_k, width, torch.int64)
        self.n_bins = len(QUANTILES) + 1
        self.bins = _Reservoir(n_nodes, config.quantile_k, width, torch.int64, groups=self.n_bins)
        self.moments = Moments(n_nodes)
        self._random_keys = _KeyStream(f"{config.seed}/{group}/random", n_nodes)
        self._bin_keys = _KeyStream(f"{config.seed}/{group}/quantile", n_nodes)
        self._moments_cache: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._low, self._high = 0, -1
        """The lowest (or 0) and highest (or -1) window number offered so far."""

    def update(self, values: torch.Tensor, seqs: np.ndarray) -> None:
        """``values`` ``[batch, width, n_nodes]`` float32 on CPU; ``seqs`` ``[batch]`` window numbers."""
        with one_thread():  # many small ops: see workers.py
            self._update_samples(values, seqs)
            self.moments.update(values)

    def update_samples(self, values: torch.Tensor, seqs: np.ndarray) -> MomentSums:
        """``update`` but for the moments: returns the batch's sums instead, for ``moments.add`` wherever the
        batches' sums are folded in plan order (collation on Ray folds them on the driver)."""
        with one_thread():
            self._update_samples(values, seqs)
            return Moments.batch_sums(values)

    def merge_samples(self, other: LayerAccumulator) -> None:
        """Take in ``other``'s samples (top-K, random, per quantile), seen over other windows with the same
        group, config and boundaries; the result is what one accumulator offered both would hold."""
        shape = (self.group, self.n_nodes, self.width, self.config)
        if (other.group, other.n_nodes, other.width, other.config) != shape:
            raise ValueError(f"cannot merge accumulators of {other.group} and {self.group}")
        if not torch.equal(other.boundaries, self.boundaries):
            raise ValueError(f"cannot merge accumulators of {self.group} with different quantile boundaries")
        for mine, theirs in ((self.top, other.top), (self.random, other.random), (self.bins, other.bins)):
            mine.merge(theirs)
        self._low, self._high = min(self._low, other._low), max(self._high, other._high)

    def _update_samples(self, values: torch.Tensor, seqs: np.ndarray) -> None:
        n, batch, n_bins = self.n_nodes, values.shape[0], self.n_bins
        width = values.shape[1]
        by_window: list[torch.Tensor] = []  # once made: [batch * n, width], one row per (window, node)
        picked_out: list[torch.Tensor] = []  # a reused buffer for picked rows: each caller copies them out at once
        if node_major(values):
            by_window.append(values.transpose(1, 2).reshape(batch * n, width))  # a view: heads come this way

        def rows_of_values(batch_pos: torch.Tensor, node: torch.Tensor) -> torch.Tensor:  # -> [m, width]
            if not by_window and batch_pos.numel() * 8 < batch * n:  # few: pick them where they lie
                return values.permute(0, 2, 1)[batch_pos, node]
            if not by_window:  # many: one transposing copy, then contiguous rows
                transposed, picked = scratch("rows", torch.Size((batch, n, width)), 2)  # [batch, n, width]
                for b in range(batch):  # one 2-D transpose per window: 3x faster than one 3-D copy
                    transposed[b].copy_(values[b].T)
                by_window.append(transposed.view(batch * n, width))
                picked_out.append(picked.view(batch * n, width))
            index = batch_pos * n + node
            if not picked_out:
                return by_window[0].index_select(0, index)
            return torch.index_select(by_window[0], 0, index, out=picked_out[0][: index.numel()])

        seq_row = torch.from_numpy(seqs.astype(np.int64))[None, :]  # [1, batch]
        # Whether top-K's packed keys order exactly (see _merge_order): every window number seen fits.
        low, high = (int(seqs.min()), int(seqs.max())) if len(seqs) else (0, -1)
        self._low, self._high = min(self._low, low), max(self._high, high)
        packable = self._low >= 0 and self._high < _SEQ_LOW
        seq_max = values.amax(dim=1).T.contiguous()  # [n, batch]

        neg_max = -seq_max
        self.top.offer(
            (neg_max <= self.top.worst[:, None]).any(dim=1),
            lambda rows: (neg_max[rows], seq_row.expand(len(rows), batch)),
            rows_of_values,
            one_sort=packable,
        )
        keys = self._random_keys.keys(seqs)  # [n, batch]
        self.random.offer(
            (keys <= self.random.worst[:, None]).any(dim=1),
            lambda rows: (keys[rows], seq_row.expand(len(rows), batch)),
            rows_of_values,
            one_sort=not bool((keys == _EMPTY).any()),
        )
        # bin (q_{b-1}, q_b] of each window, per node: how many boundaries lie below its max
        bin_of = (seq_max.to(torch.float64)[:, :, None] > self.boundaries[:, None, :]).sum(dim=2)  # [n, batch]
        bin_keys = self._bin_keys.keys(seqs)  # [n, batch]
        row_of = torch.arange(n)[:, None] * n_bins + bin_of  # [n, batch] row of (node, bin)
        entering = bin_keys <= self.bins.worst[row_of]  # [n, batch]
        active = torch.zeros(n * n_bins, dtype=torch.bool)
        active[row_of[entering]] = True

        def bin_candidates(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            node, b = rows // n_bins, rows % n_bins
            outside = bin_of[node] != b[:, None]  # [r, batch]
            return bin_keys[node].masked_fill(outside, _EMPTY), seq_row.expand(len(rows), batch).masked_fill(
                outside, _EMPTY
            )

        self.bins.offer(active, bin_candidates, rows_of_values, one_sort=not bool((bin_keys == _EMPTY).any()))

    def summary(self, node: int) -> NodeSummary:
        top_seqs, top_values = self.top.kept(node)
        random_seqs, random_values = self.random.kept(node)
        bins = [self.bins.kept(node * self.n_bins + b) for b in range(self.n_bins)]
        mean, var, skew, kurt = (float(a[node]) for a in self._moment_summary())
        return NodeSummary(
            top_seqs,
            top_values,
            random_seqs,
            random_values,
            [s for s, _ in bins],
            [v for _, v in bins],
            [float(b) for b in self.boundaries[node]],
            mean,
            var,
            skew,
            kurt,
        )

    def _moment_summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._moments_cache is None:
            self._moments_cache = self.moments.summary()
        return self._moments_cache

    def state(self) -> dict[str, torch.Tensor]:
        out = {"boundaries": self.boundaries}
        out.update(self.top.state("top"))
        out.update(self.random.state("random"))
        out.update(self.bins.state("bins"))
        out.update(self.moments.state("moments"))
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        self.boundaries = state["boundaries"]
        self.top.load("top", state)
        self.random.load("random", state)
        self.bins.load("bins", state)
        self.moments.load("moments", state)
        self._moments_cache = None
        seqs = torch.cat([r.seq.flatten() for r in (self.top, self.random, self.bins)])
        seqs = seqs[seqs != _EMPTY]
        self._low = min(0, int(seqs.min())) if seqs.numel() else 0
        self._high = int(seqs.max()) if seqs.numel() else -1
