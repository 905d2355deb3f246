"""Streaming accumulators against brute force over all the data (no model needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuron_explainer.collation.accumulators import LayerAccumulator, SamplingConfig, _merge_order
from neuron_explainer.collation.statistics import QUANTILES, QuantileEstimator

N_SEQ, WIDTH, N_NODES = 300, 12, 6


def _data(seed: int = 0) -> np.ndarray:
    """[seq, width, node] with heavy ties (values rounded to 0.25) and a constant (dead) last node."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal((N_SEQ, WIDTH, N_NODES)) * 4) / 4
    x[:, :, 1] = np.maximum(x[:, :, 1], 0) ** 3  # skewed, heavy-tailed
    x[:, :, -1] = 0.0
    return x.astype(np.float32)


def _run(
    data: np.ndarray,
    batch: int,
    config: SamplingConfig,
    stop_after: int | None = None,
    order: np.ndarray | None = None,
) -> LayerAccumulator:
    """Offers ``data`` in batches of ``batch`` windows, in window order or in ``order``."""
    est = QuantileEstimator()
    est.add(torch.from_numpy(data).amax(dim=1))
    acc = LayerAccumulator("test/0", N_NODES, WIDTH, config, est.boundaries())
    windows = np.arange(len(data)) if order is None else order
    for i, start in enumerate(range(0, len(data), batch)):
        if stop_after is not None and i == stop_after:  # simulate a crash: restore into a fresh object
            fresh = LayerAccumulator("test/0", N_NODES, WIDTH, config, est.boundaries())
            fresh.load({k: v.clone() for k, v in acc.state().items()})
            acc = fresh
        seqs = windows[start : start + batch]
        acc.update(torch.from_numpy(data[seqs]), seqs)
    return acc


CONFIG = SamplingConfig(top_k=10, random_k=7, quantile_k=3, seed=5)


@pytest.mark.parametrize("batch", [1, 7, 64, N_SEQ])
def test_top_k_is_exact_with_ties_broken_by_sequence(batch: int) -> None:
    data = _data()
    acc = _run(data, batch, CONFIG)
    seq_max = data.max(axis=1)  # [seq, node]
    for node in range(N_NODES):
        # brute force: sort by (max desc, seq asc)
        order = sorted(range(N_SEQ), key=lambda s: (-seq_max[s, node], s))[: CONFIG.top_k]
        s = acc.summary(node)
        assert s.top_seqs.tolist() == order
        np.testing.assert_array_equal(s.top_values, data[order, :, node])


def test_samples_do_not_depend_on_batching_order_or_resumption() -> None:
    data = _data()
    shuffled = np.random.default_rng(3).permutation(N_SEQ)  # as the builder's pre-pass windows go first
    runs = [
        _run(data, 7, CONFIG),
        _run(data, 64, CONFIG),
        _run(data, 7, CONFIG, stop_after=11),
        _run(data, 16, CONFIG, order=shuffled),
    ]
    for node in range(N_NODES):
        first = runs[0].summary(node)
        for other in runs[1:]:
            s = other.summary(node)
            assert s.random_seqs.tolist() == first.random_seqs.tolist()
            assert [q.tolist() for q in s.quantile_seqs] == [q.tolist() for q in first.quantile_seqs]
            np.testing.assert_array_equal(s.random_values, first.random_values)
            assert s.top_seqs.tolist() == first.top_seqs.tolist()
            assert s.mean == pytest.approx(first.mean, rel=1e-6, abs=1e-9)  # float32 batch sums


def test_random_sample_is_uniform_distinct_and_seeded() -> None:
    data = _data()
    acc = _run(data, 32, SamplingConfig(top_k=1, random_k=30, quantile_k=0, seed=1))
    other_seed = _run(data, 32, SamplingConfig(top_k=1, random_k=30, quantile_k=0, seed=2))
    counts = np.zeros(N_SEQ)
    for node in range(N_NODES):
        s = acc.summary(node)
        assert len(set(s.random_seqs.tolist())) == 30
        np.testing.assert_array_equal(s.random_values, data[s.random_seqs, :, node])
        counts[s.random_seqs] += 1
    assert acc.summary(0).random_seqs.tolist() != other_seed.summary(0).random_seqs.tolist()
    assert acc.summary(0).random_seqs.tolist() != acc.summary(1).random_seqs.tolist()  # independent per node
    # picks spread over the whole stream, not bunched at its start (what a broken reservoir does)
    halves = counts[: N_SEQ // 2].sum(), counts[N_SEQ // 2 :].sum()
    assert min(halves) > 0.3 * counts.sum()


def test_quantile_bins_hold_members_and_boundaries_are_numpy_quantiles() -> None:
    data = _data()
    acc = _run(data, 16, CONFIG)
    seq_max = data.max(axis=1).astype(np.float64)
    for node in range(N_NODES):
        s = acc.summary(node)
        expected = np.quantile(seq_max[:, node], QUANTILES)  # method="linear"
        np.testing.assert_allclose(s.quantile_boundaries, expected, rtol=0, atol=1e-12)
        edges = [-math.inf, *s.quantile_boundaries, math.inf]
        for b, (seqs, values) in enumerate(zip(s.quantile_seqs, s.quantile_values, strict=True)):
            members = [i for i in range(N_SEQ) if edges[b] < seq_max[i, node] <= edges[b + 1]]
            assert len(seqs) == min(CONFIG.quantile_k, len(members))
            assert set(seqs.tolist()) <= set(members)
            np.testing.assert_array_equal(values, data[seqs, :, node])
    dead = acc.summary(N_NODES - 1)
    assert len(dead.quantile_seqs[0]) == CONFIG.quantile_k  # zeros land in the lowest bin
    assert all(len(q) == 0 for q in dead.quantile_seqs[1:])


def test_moments_match_float64_brute_force() -> None:
    data = _data()
    acc = _run(data, 23, CONFIG)
    for node in range(N_NODES - 1):
        x = data[:, :, node].astype(np.float64).ravel()
        mean, var = x.mean(), x.var()
        m3, m4 = ((x - mean) ** 3).mean(), ((x - mean) ** 4).mean()
        s = acc.summary(node)
        assert s.mean == pytest.approx(mean, rel=1e-4, abs=1e-6)
        assert s.variance == pytest.approx(var, rel=1e-4)
        assert s.skewness == pytest.approx(m3 / var**1.5, rel=1e-4, abs=1e-6)
        assert s.kurtosis == pytest.approx(m4 / var**2 - 3.0, rel=1e-4, abs=1e-6)
    dead = acc.summary(N_NODES - 1)
    assert dead.mean == 0.0 and dead.variance == 0.0
    assert math.isnan(dead.skewness) and math.isnan(dead.kurtosis)


def test_memory_is_bounded_by_the_kept_samples() -> None:
    acc = _run(_data(), 50, CONFIG)
    kept_values = sum(t.numel() for k, t in acc.state().items() if k.endswith(".vals"))
    per_node = (CONFIG.top_k + CONFIG.random_k + (len(QUANTILES) + 1) * CONFIG.quantile_k) * WIDTH
    assert kept_values == N_NODES * per_node


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64])
def test_one_sort_merge_equals_the_two_pass_sort_with_ties_out_of_order(dtype: torch.dtype) -> None:
    """Tied keys whose windows arrive out of order (a newcomer below a kept one) still merge by window."""
    prim = torch.tensor([[1, 2, 2, 5], [0, 3, 3, 3]], dtype=dtype)
    seq = torch.tensor([[4, 7, 9, 2], [8, 1, 5, 6]])
    new_prim = torch.tensor([[2, 2, 1], [3, 0, 9]], dtype=dtype)
    new_seq = torch.tensor([[3, 8, 0], [0, 2, 4]])
    two_pass = _merge_order(prim, seq, new_prim, new_seq, one_sort=False)
    assert two_pass.tolist() == [[6, 0, 4, 1], [5, 0, 4, 1]]  # (prim, seq) order: ties by window
    assert _merge_order(prim, seq, new_prim, new_seq, one_sort=True).tolist() == two_pass.tolist()


def test_a_transposed_view_gives_the_same_summaries() -> None:
    """Heads' values come as a view of ``[batch, node, width]``; the result must not depend on layout."""
    data = _data()
    node_major = np.ascontiguousarray(data.transpose(0, 2, 1))  # [seq, node, width]
    est = QuantileEstimator()
    est.add(torch.from_numpy(data).amax(dim=1))
    plain, viewed = (LayerAccumulator("test/0", N_NODES, WIDTH, CONFIG, est.boundaries()) for _ in range(2))
    for start in range(0, N_SEQ, 64):
        seqs = np.arange(start, min(start + 64, N_SEQ))
        plain.update(torch.from_numpy(data[seqs]), seqs)
        view = torch.from_numpy(node_major[seqs]).transpose(1, 2)  # [batch, width, node], not contiguous
        assert not view.is_contiguous()
        viewed.update(view, seqs)
    for node in range(N_NODES):
        a, b = plain.summary(node), viewed.summary(node)
        assert a.top_seqs.tolist() == b.top_seqs.tolist()
        np.testing.assert_array_equal(a.top_values, b.top_values)
        assert a.random_seqs.tolist() == b.random_seqs.tolist()
        assert [q.tolist() for q in a.quantile_seqs] == [q.tolist() for q in b.quantile_seqs]
        for x, y in zip((a.mean, a.variance, a.skewness), (b.mean, b.variance, b.skewness), strict=True):
            assert x == pytest.approx(y, rel=1e-5, abs=1e-7) or (math.isnan(x) and math.isnan(y))
