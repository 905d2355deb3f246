"""Per-node statistics over streamed batches: moments, quantile boundaries, and the buffers they share.

``Moments`` keeps mean and central sums M2..M4 per node (float64, merged pairwise across batches);
``QuantileEstimator`` turns the pre-pass's per-window maxima into per-node quantile boundaries. Both see
values ``[batch, width, n_nodes]`` float32 in either layout the builder produces (:func:`node_major`).
"""

from __future__ import annotations

import threading

import numpy as np
import torch

QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999)
"""Quantile boundaries of the per-quantile samples (the original datasets' five bins)."""


def node_major(values: torch.Tensor) -> bool:
    """Whether ``values`` ``[batch, width, n]`` is a transposed view of a contiguous ``[batch, n, width]``
    (how heads' token-pair values come: transposing them would cost more than using them as they are)."""
    return values.shape[1] > 1 and values.shape[2] > 1 and values.transpose(1, 2).is_contiguous()


_SCRATCH = threading.local()


def scratch(use: str, shape: torch.Size, count: int) -> list[torch.Tensor]:
    """``count`` float32 work tensors of ``shape`` for ``use``, kept per thread for the next such call
    (a fresh tensor of a few MB costs more in page faults than the arithmetic done in it)."""
    cache: dict[tuple[str, tuple[int, ...], int], list[torch.Tensor]] = _SCRATCH.__dict__.setdefault("cache", {})
    key = (use, tuple(shape), count)
    if key not in cache:
        if len(cache) > 16:
            cache.clear()
        cache[key] = [torch.empty(shape, dtype=torch.float32) for _ in range(count)]
    return cache[key]


MomentSums = tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
"""One batch's ``(count, mean [n] float32, M2 [n], M3 [n], M4 [n] float64)``: what ``Moments.add`` folds in."""


class Moments:
    """Streaming count / mean / central sums M2..M4 per node, float64, pairwise-merged.

    ``update(values)`` is ``add(batch_sums(values))``; the two halves may run in different processes
    (collation on Ray), and folding the same batches' sums in the same order gives the same bits."""

    _BLOCK = 256
    """Columns (nodes) per block: ``batch * width`` rows x 256 float32 is ~2 MB, one core's L2."""

    def __init__(self, n_nodes: int) -> None:
        self.count = torch.zeros(n_nodes, dtype=torch.float64)
        self.mean = torch.zeros(n_nodes, dtype=torch.float64)
        self.m2 = torch.zeros(n_nodes, dtype=torch.float64)
        self.m3 = torch.zeros(n_nodes, dtype=torch.float64)
        self.m4 = torch.zeros(n_nodes, dtype=torch.float64)

    def update(self, values: torch.Tensor) -> None:  # values [batch, width, n]
        self.add(self.batch_sums(values))

    @classmethod
    def batch_sums(cls, values: torch.Tensor) -> MomentSums:  # values [batch, width, n]
        if node_major(values):
            return cls._node_major_sums(values.transpose(1, 2))
        return cls._node_minor_sums(values.reshape(-1, values.shape[2]))

    def add(self, sums: MomentSums) -> None:
        nb, mb32, m2b, m3b, m4b = sums
        mb = mb32.to(torch.float64)
        na = self.count
        n = na + nb
        delta = mb - self.mean
        self.m4 = (
            self.m4
            + m4b
            + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
            + 6 * delta**2 * (na * na * m2b + nb * nb * self.m2) / n**2
            + 4 * delta * (na * m3b - nb * self.m3) / n
        )
        self.m3 = self.m3 + m3b + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * self.m2) / n
        self.m2 = self.m2 + m2b + delta**2 * na * nb / n
        self.mean = self.mean + delta * nb / n
        self.count = n

    @classmethod
    def _node_minor_sums(cls, x: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``[values, n]``: count, float32 mean and float64 central sums of powers 2..4 per node."""
        mb32 = torch.empty(x.shape[1], dtype=torch.float32)  # [n]
        sums = torch.empty(3, x.shape[1], dtype=torch.float32)  # [power 2..4, n]
        block = min(cls._BLOCK, x.shape[1])
        d, power = scratch("moments", torch.Size((x.shape[0], block)), 2)
        for lo in range(0, x.shape[1], block):  # column blocks: all six passes over one stay in cache
            hi = min(lo + block, x.shape[1])
            d_, p_ = d[:, : hi - lo], power[:, : hi - lo]
            torch.mean(x[:, lo:hi], dim=0, out=mb32[lo:hi])
            torch.sub(x[:, lo:hi], mb32[lo:hi], out=d_)  # float32, centred on the batch mean
            torch.mul(d_, d_, out=p_)
            torch.sum(p_, dim=0, out=sums[0, lo:hi])  # sums are pairwise in float32
            p_.mul_(d_)
            torch.sum(p_, dim=0, out=sums[1, lo:hi])
            p_.mul_(d_)
            torch.sum(p_, dim=0, out=sums[2, lo:hi])
        m2b, m3b, m4b = sums.to(torch.float64)
        return float(x.shape[0]), mb32, m2b, m3b, m4b

    @staticmethod
    def _node_major_sums(y: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same from ``y`` ``[batch, n, width]`` (few nodes with wide rows: attention heads)."""
        mb32 = y.mean(dim=(0, 2))  # [n]
        d, power = scratch("moments", y.shape, 2)
        torch.sub(y, mb32[None, :, None], out=d)
        torch.mul(d, d, out=power)
        m2b = power.sum(dim=(0, 2)).to(torch.float64)
        power.mul_(d)
        m3b = power.sum(dim=(0, 2)).to(torch.float64)
        power.mul_(d)
        m4b = power.sum(dim=(0, 2)).to(torch.float64)
        return float(y.shape[0] * y.shape[2]), mb32, m2b, m3b, m4b

    def summary(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, variance, skewness, excess kurtosis)`` per node; NaN where undefined (constant node)."""
        n = self.count.numpy()
        m2, m3, m4 = self.m2.numpy(), self.m3.numpy(), self.m4.numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            var = np.where(n > 0, m2 / n, np.nan)
            positive = var > 1e-300
            skew = np.where(positive, np.sqrt(n) * m3 / m2**1.5, np.nan)
            kurt = np.where(positive, n * m4 / (m2 * m2) - 3.0, np.nan)
        return np.where(n > 0, self.mean.numpy(), np.nan), var, skew, kurt

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": getattr(self, k) for k in ("count", "mean", "m2", "m3", "m4")}

    def load(self, prefix: str, state: dict[str, torch.Tensor]) -> None:
        for k in ("count", "mean", "m2", "m3", "m4"):
            setattr(self, k, state[f"{prefix}.{k}"])


class QuantileEstimator:
    """Collects per-sequence maxima of a bounded window sample; returns per-node quantile boundaries."""

    def __init__(self, quantiles: tuple[float, ...] = QUANTILES) -> None:
        self.quantiles = quantiles
        self._maxima: list[torch.Tensor] = []

    def add(self, seq_max: torch.Tensor) -> None:  # [batch, n]
        self._maxima.append(seq_max.to(torch.float64))

    def boundaries(self) -> torch.Tensor:  # -> [n, len(quantiles)] float64
        """Per node, numpy ``quantile(..., method="linear")`` of the maxima seen."""
        x = torch.sort(torch.cat(self._maxima, dim=0).T, dim=1).values  # [n, samples]
        m = x.shape[1]
        cols = []
        for q in self.quantiles:
            h = (m - 1) * q
            lo = int(np.floor(h))
            hi = min(lo + 1, m - 1)
            cols.append(x[:, lo] + (h - lo) * (x[:, hi] - x[:, lo]))
        return torch.stack(cols, dim=1)
