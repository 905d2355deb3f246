"""The numbers scorers report, computed strictly: mismatched lengths and non-finite values are refused.

``paired`` is the one gate every metric goes through: a broken simulation (one value short, a NaN from
a bad parse, a record with a NaN activation) is a ``ScoringInputError`` (a ``BadInput`` and a
``ValueError``) naming what is wrong, never a score.
``roc_auc`` is the Mann-Whitney form (ties get average ranks), as sklearn's ``roc_auc_score``;
``spearman`` is the Pearson correlation of average ranks, as ``scipy.stats.spearmanr``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neuron_explainer.activations.tdb_json import all_finite
from neuron_explainer.errors import BadInput


class ScoringInputError(BadInput, ValueError):
    """Inputs no score can be computed from (``BAD_USER_INPUT`` to a client; a ``ValueError`` in a notebook)."""


def paired(real: Sequence[float], predicted: Sequence[float], what: str = "scores") -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 arrays (``[n]``); ``BadInput`` when lengths differ or a value is NaN/inf."""
    if len(real) != len(predicted):
        raise ScoringInputError(
            f"cannot compute {what}: {len(real)} real values against {len(predicted)} predicted ones",
            real=len(real),
            predicted=len(predicted),
        )
    for side, values in (("real", real), ("predicted", predicted)):
        if not all_finite([float(v) for v in values]):
            bad = next(n for n, v in enumerate(values) if not np.isfinite(float(v)))
            raise ScoringInputError(
                f"cannot compute {what}: {side} value {bad} is {float(values[bad])}, not a finite number",
                side=side,
                position=bad,
            )
    return np.asarray(real, dtype=np.float64), np.asarray(predicted, dtype=np.float64)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks (``[n]``), ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def roc_auc(labels: Sequence[int | bool], scores: Sequence[float]) -> float | None:
    """Area under the ROC curve of ``scores`` separating label 1 from label 0; None with one class."""
    y, s = paired([float(v) for v in labels], scores, "ROC-AUC")
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise ScoringInputError("ROC-AUC labels must be 0 or 1")
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(s)
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass(frozen=True, slots=True)
class BinaryMetrics:
    """A yes/no classifier against the truth (delphi's confusion-matrix summary, Paulo et al. 2024)."""

    balanced_accuracy: float | None
    """Mean of the true-positive and true-negative rates; None unless both classes occur."""
    precision: float | None
    """TP / (TP + FP); None when nothing was predicted positive."""
    recall: float | None
    """TP / positives; None without positives."""
    f1: float | None
    true_positives: int
    true_negatives: int
    false_positives: int
    false_negatives: int


def binary_metrics(labels: Sequence[int | bool], predictions: Sequence[int | bool]) -> BinaryMetrics:
    y, p = paired([float(v) for v in labels], [float(v) for v in predictions], "classification metrics")
    if not set(np.unique(np.concatenate([y, p]))) <= {0.0, 1.0}:
        raise ScoringInputError("classification labels and predictions must be 0 or 1")
    tp = int(((p == 1) & (y == 1)).sum())
    tn = int(((p == 0) & (y == 0)).sum())
    fp = int(((p == 1) & (y == 0)).sum())
    fn = int(((p == 0) & (y == 1)).sum())
    pos, neg = tp + fn, tn + fp
    balanced = (tp / pos + tn / neg) / 2 if pos and neg else None
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / pos if pos else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(balanced, precision, recall, f1, tp, tn, fp, fn)


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than 2 pairs or a constant side."""
    x, y = paired(a, b, "rank correlation")
    if x.size < 2:
        return None
    rx, ry = average_ranks(x), average_ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])
