"""Scoring math against numpy and brute force; record splits; token-pair coordinates."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.errors import BadInput
from neuron_explainer.explanations.attention_pairs import mark_pair, pair_coords
from neuron_explainer.explanations.attention_scoring import roc_auc
from neuron_explainer.explanations.results import ActivationScale, SequenceSimulation
from neuron_explainer.explanations.scoring import (
    absolute_dev_explained_score,
    aggregate,
    correlation_score,
    rsquared_score,
    score_sequence,
)
from neuron_explainer.explanations.splits import (
    check_explainable,
    normalize_0_10,
    train_records,
    valid_records,
)
from tests.explain_records import neuron_record, silent_record


def _sim(values: list[float]) -> SequenceSimulation:
    return SequenceSimulation(
        tokens=["t"] * len(values),
        expected_activations=values,
        activation_scale=ActivationScale.SIMULATED_NORMALIZED_ACTIVATIONS,
        distribution_values=[],
        distribution_probabilities=[],
    )


def test_correlation_matches_numpy_and_guards_constants() -> None:
    rng = np.random.default_rng(0)
    real, pred = rng.normal(size=50), rng.normal(size=50) + np.arange(50) / 10
    assert correlation_score(list(real), list(pred)) == pytest.approx(np.corrcoef(real, pred)[0, 1])
    assert correlation_score([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]) == 0.0
    assert correlation_score([1.0], [1.0]) == 0.0


def test_rsquared_and_absolute_deviation() -> None:
    real, pred = np.array([1.0, 2.0, 0.0, 4.0]), np.array([1.5, 1.0, 0.0, 3.0])
    assert rsquared_score(list(real), list(pred)) == pytest.approx(1 - np.mean((real - pred) ** 2) / np.mean(real**2))
    assert absolute_dev_explained_score(list(real), list(pred)) == pytest.approx(
        1 - np.mean(np.abs(real - pred)) / np.mean(np.abs(real))
    )
    assert rsquared_score([0.0, 0.0], [1.0, 2.0]) is None
    assert absolute_dev_explained_score([0.0, 0.0], [1.0, 2.0]) is None


def test_aggregate_correlates_the_concatenation_not_the_mean() -> None:
    a = score_sequence(_sim([0.0, 10.0, 0.0]), [0.0, 1.0, 0.2])
    b = score_sequence(_sim([5.0, 0.0, 10.0]), [3.0, 0.5, 2.0])
    scored = aggregate([a, b])
    expected = np.corrcoef([0.0, 1.0, 0.2, 3.0, 0.5, 2.0], [0.0, 10.0, 0.0, 5.0, 0.0, 10.0])[0, 1]
    assert scored.ev_correlation_score == pytest.approx(expected)
    assert scored.ev_correlation_score != pytest.approx((a.ev_correlation_score + b.ev_correlation_score) / 2)


def _brute_auc(labels: list[int], scores: list[float]) -> float:
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(5))
def test_roc_auc_matches_pairwise_definition_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = [int(x) for x in rng.integers(0, 2, size=30)]
    scores = [float(x) for x in rng.integers(0, 5, size=30) / 4]  # many ties
    assert roc_auc(labels, scores) == pytest.approx(_brute_auc(labels, scores))


def test_roc_auc_single_class_and_nan() -> None:
    assert roc_auc([1, 1, 1], [0.2, 0.5, 0.9]) is None
    assert roc_auc([], []) is None
    with pytest.raises(ValueError):
        roc_auc([0, 1], [float("nan"), 0.5])
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0


def test_splits_follow_the_original_strides() -> None:
    record = neuron_record(n_top=20, n_random=15)
    top, rand = record.most_positive_activation_records, record.random_sample
    assert train_records(record) == [top[i] for i in (0, 4, 8, 12, 16)]
    assert valid_records(record) == [top[i] for i in (2, 6, 10, 14, 18)] + [rand[i] for i in (1, 4, 7, 10, 13)]
    assert valid_records(record, max_sequences=2) == [top[2], top[6]]
    with pytest.raises(BadInput):
        valid_records(record, max_sequences=0)


def test_splits_degrade_with_few_records() -> None:
    record = neuron_record(n_top=7, n_random=2)
    top, rand = record.most_positive_activation_records, record.random_sample
    assert train_records(record) == [top[0], top[4]]
    assert valid_records(record) == [top[2], top[6], rand[1]]


def test_unexplainable_nodes_are_bad_input() -> None:
    with pytest.raises(BadInput, match="never active"):
        check_explainable(silent_record(), "m/mlp_neuron/0/2")
    with pytest.raises(BadInput, match="no activation records"):
        check_explainable(NeuronRecord(layer=0, index=0, most_positive_activation_records=[]), "m/mlp_neuron/0/0")


def test_normalize_0_10() -> None:
    assert normalize_0_10([-1.0, 0.0, 0.49, 0.5, 1.0, 2.0], 1.0) == [0, 0, 4, 5, 10, 10]
    assert normalize_0_10([1.0], 0.0) == [0]


def test_pair_coords_square_and_truncated_window() -> None:
    assert pair_coords(3, 6) == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    # window 2 over 4 tokens: rows of 1, 2, 2, 2 values, keys 0..1 (torch.tril_indices(4, 2), the original's)
    assert pair_coords(4, 7) == [(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
    with pytest.raises(BadInput):
        pair_coords(4, 8)


def test_mark_pair() -> None:
    tokens = ["The", " cat", " sat"]
    assert mark_pair(tokens, 2, 1) == "The **cat** [[sat]]"
    assert mark_pair(tokens, 0, 0) == "[[**The**]] cat sat"


def test_a_record_with_an_empty_valid_split_is_bad_input_not_a_zero_score() -> None:
    from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
    from neuron_explainer.errors import BadInput
    from neuron_explainer.explanations.splits import valid_records

    record = NeuronRecord(layer=0, index=0, most_positive_activation_records=[ActivationRecord(["a"], [1.0])])
    with pytest.raises(BadInput, match="too few records to score"):
        valid_records(record)
