"""Token-pair (un)flattening against numpy's tril_indices order and the truncated-window rule (§2.4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuron_explainer.activations.attention import (
    attention_window,
    flat_index_to_pair,
    flatten_rows,
    inverse_triangular,
    is_valid_flat_length,
    row_lengths,
    triangular,
    unflatten_rows,
)
from neuron_explainer.activations.codec import decode_neuron_record

HEADS = Path(__file__).parent / "fixtures/tdb/gpt2_small/attn_write_norm/collated-activations-by-token-pair"


def _labelled_rows(n: int, window: int) -> list[list[float]]:
    """Row i holds 1000*i + (offset within row): every value says where it belongs."""
    return [[1000.0 * i + k for k in range(min(i + 1, window))] for i in range(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 64])
def test_square_flattening_is_tril_indices_order(n: int) -> None:
    matrix = np.arange(n * n, dtype=np.float64).reshape(n, n)  # [query, key]
    rows, cols = np.tril_indices(n)  # the same row-major order as torch.tril_indices
    expected = matrix[rows, cols].tolist()
    flat = flatten_rows([matrix[i, : i + 1].tolist() for i in range(n)])
    assert flat == expected
    assert unflatten_rows(flat, n) == [matrix[i, : i + 1].tolist() for i in range(n)]
    assert [flat_index_to_pair(k) for k in range(len(flat))] == list(zip(rows.tolist(), cols.tolist(), strict=True))
    assert [flat_index_to_pair(k, n, len(flat)) for k in range(len(flat))] == list(
        zip(rows.tolist(), cols.tolist(), strict=True)
    )


def test_first_pairs_are_in_the_documented_order() -> None:
    assert [flat_index_to_pair(k) for k in range(6)] == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]


@pytest.mark.parametrize("n", range(1, 13))
def test_every_truncated_window_round_trips(n: int) -> None:
    for window in range(1, n + 1):
        rows = _labelled_rows(n, window)
        flat = flatten_rows(rows)
        assert len(flat) == triangular(n) - triangular(n - window)
        assert attention_window(n, len(flat)) == window
        assert row_lengths(n, window) == [len(r) for r in rows]
        assert unflatten_rows(flat, n) == rows
        for k, value in enumerate(flat):
            i, j = flat_index_to_pair(k, n, len(flat))
            assert value == 1000.0 * i + j


@pytest.mark.parametrize("n", range(0, 31))
def test_valid_lengths_are_exactly_the_window_lengths(n: int) -> None:
    window_lengths = {sum(min(i + 1, w) for i in range(n)) for w in range(1, n + 1)} or {0}
    for length in range(0, triangular(n) + 3):
        assert is_valid_flat_length(n, length) == (length in window_lengths), (n, length)


@pytest.mark.parametrize(
    ("n", "length", "words"),
    [
        (4, 11, "more than the 10 pairs"),
        (4, 8, "not a triangular number"),
        (3, 0, "every row would be empty"),
        (0, 1, "more than the 0 pairs"),
        (5, 13, "not a triangular number"),
    ],
)
def test_impossible_lengths_raise_naming_both_lengths(n: int, length: int, words: str) -> None:
    with pytest.raises(ValueError, match=words) as info:
        unflatten_rows([0.0] * length, n)
    assert f"{length} token-pair values for {n} tokens" in str(info.value)


def test_per_token_length_reads_as_window_one() -> None:
    assert unflatten_rows([1.0, 2.0, 3.0], 3) == [[1.0], [2.0], [3.0]]


def test_empty_record() -> None:
    assert unflatten_rows([], 0) == []
    assert flatten_rows([]) == []


@pytest.mark.parametrize(
    "rows",
    [[[1.0], [1.0, 2.0], [1.0]], [[1.0, 2.0]], [[]], [[1.0], [], [1.0]], [[1.0], [1.0, 2.0, 3.0]]],
)
def test_flatten_rejects_rows_no_window_produces(rows: list[list[float]]) -> None:
    with pytest.raises(ValueError):
        flatten_rows(rows)


def test_inverse_triangular_is_exact_for_huge_numbers() -> None:
    m = 10**12 + 7  # float sqrt would round here
    assert inverse_triangular(triangular(m)) == m
    with pytest.raises(ValueError, match="not a triangular number"):
        inverse_triangular(triangular(m) + 1)
    with pytest.raises(ValueError):
        inverse_triangular(-1)


def test_flat_index_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="both"):
        flat_index_to_pair(0, n_tokens=3)
    with pytest.raises(ValueError, match="out of range"):
        flat_index_to_pair(6, 3, 6)
    with pytest.raises(ValueError, match="out of range"):
        flat_index_to_pair(5, 4, 5)


def test_fixture_head_records_unflatten_to_the_rows_written_by_hand() -> None:
    square = decode_neuron_record((HEADS / "0/0.json").read_bytes(), "0/0.json")
    top = square.most_positive_activation_records[0]
    assert unflatten_rows(top.activations, len(top.tokens)) == [
        [0.9],
        [0.1, 0.8],
        [0.05, 0.2, 0.6],
        [0.0, 0.3, 0.1, 1.2],
    ]
    truncated = decode_neuron_record((HEADS / "0/1.json").read_bytes(), "0/1.json")
    five, six = truncated.most_positive_activation_records
    assert attention_window(len(five.tokens), len(five.activations)) == 3
    assert unflatten_rows(five.activations, len(five.tokens)) == [
        [1.0],
        [0.2, 0.9],
        [0.0, 0.1, 0.6],
        [0.3, 0.0, 0.4],
        [0.05, 0.2, 1.5],
    ]
    assert attention_window(len(six.tokens), len(six.activations)) == 2
    assert unflatten_rows(six.activations, len(six.tokens))[-1] == [0.0, 0.9]
    (random,) = truncated.random_sample
    assert unflatten_rows(random.activations, len(random.tokens)) == [[0.2], [0.1], [0.0], [0.3]]
