"""Which records the classifier scorers show, and with which label (Paulo et al. 2024, arXiv 2410.13928).

Activating examples: the valid split of the top records (2, 6, 10, ...; never the train records the
explainer saw), then records from the quantile bins, highest bin first and round-robin, so that weak
activations are tested too (delphi samples activating examples across quantiles for the same reason).
Non-activating examples: random records whose max is at most ``NON_ACTIVATING_FRACTION`` of the node's
max activation (then quantile-bin records under the same bound). A dense MLP neuron is rarely exactly 0,
hence a fraction rather than "never fires"; a sparse latent's random records are mostly 0 anyway.

A node with fewer than ``min_non_activating`` such records cannot be scored this way: ``BadInput``
saying how many are needed and how many there are.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from neuron_explainer.activations.records import ActivationRecord, NeuronRecord
from neuron_explainer.errors import BadInput

NON_ACTIVATING_FRACTION = 0.1
"""A record is non-activating when its max is at most this fraction of the node's max activation (the
same bound the attention scorer uses for its low pairs)."""
DEFAULT_ACTIVATING = 10
DEFAULT_NON_ACTIVATING = 10
MIN_NON_ACTIVATING = 5


@dataclass(frozen=True, slots=True)
class Example:
    record: ActivationRecord
    source: str
    """``top``, ``quantile:{bin}`` or ``random``."""
    activating: bool

    @property
    def max_activation(self) -> float:
        return max(self.record.activations, default=0.0)


def _max(record: ActivationRecord) -> float:
    return max(record.activations, default=0.0)


def _round_robin(bins: Sequence[Sequence[tuple[int, ActivationRecord]]]) -> list[tuple[int, ActivationRecord]]:
    out: list[tuple[int, ActivationRecord]] = []
    for row in itertools.zip_longest(*bins):
        out.extend(item for item in row if item is not None)
    return out


def select_examples(
    record: NeuronRecord,
    method: str,
    *,
    n_activating: int = DEFAULT_ACTIVATING,
    n_non_activating: int = DEFAULT_NON_ACTIVATING,
    min_non_activating: int = MIN_NON_ACTIVATING,
    max_examples: int | None = None,
) -> list[Example]:
    """Activating examples first, then non-activating ones; ``max_examples`` keeps both halves balanced."""
    if max_examples is not None and max_examples < 2:
        raise BadInput(
            f"{method} needs at least 2 examples (one of each kind), got maxSequences {max_examples}",
            argument="maxSequences",
        )
    threshold = NON_ACTIVATING_FRACTION * record.max_activation
    bins = list(enumerate(record.random_sample_by_quantile or []))
    top = [Example(r, "top", True) for r in record.most_positive_activation_records[2::4]]
    high = [[(b, r) for r in records if _max(r) > threshold] for b, records in reversed(bins)]
    from_bins = [Example(r, f"quantile:{b}", True) for b, r in _round_robin(high)]
    take_top = min(len(top), max(n_activating // 2, n_activating - len(from_bins)))
    activating = top[:take_top] + from_bins[: n_activating - take_top]
    low = [(b, r) for b, records in bins for r in records if _max(r) <= threshold]
    non_activating = [Example(r, "random", False) for r in record.random_sample if _max(r) <= threshold]
    non_activating += [Example(r, f"quantile:{b}", False) for b, r in low]
    if len(non_activating) < min_non_activating:
        raise BadInput(
            f"{method} needs at least {min_non_activating} non-activating records (max activation at most "
            f"{NON_ACTIVATING_FRACTION:g} x the node's max {record.max_activation:.4g}); this node has "
            f"{len(non_activating)} among its {len(record.random_sample)} random and "
            f"{sum(len(r) for _, r in bins)} quantile-sampled records",
            method=method,
            needed=min_non_activating,
            found=len(non_activating),
        )
    if not activating:
        raise BadInput(f"{method} needs activating records; this node has none", method=method)
    n_pos, n_neg = min(n_activating, len(activating)), min(n_non_activating, len(non_activating))
    if max_examples is not None and n_pos + n_neg > max_examples:
        n_pos = max(1, min(n_pos, max_examples // 2))
        n_neg = max(1, min(n_neg, max_examples - n_pos))
        n_pos = min(len(activating), max_examples - n_neg)
    return activating[:n_pos] + non_activating[:n_neg]
