"""Which windows each forward of a build takes: the ``Plan``, a pure function of the corpus size and config.

How the plan is chosen:

- the **quantile pre-pass** takes ``min(quantile_windows, n_windows)`` evenly spaced windows (``linspace``
  over the window numbers, rounded, ascending), cut into batches of ``batch_size`` in that order;
- the **main pass** takes every window once, in batches of ``batch_size``: when the pre-pass's values
  fit in ``reuse_prepass_bytes`` (``reuse``), the pre-pass's batches come first (their values are kept
  and accumulated without a second forward), then the other windows in ascending order; otherwise every
  window in ascending order.

Nothing else (thread count, machine, number of Ray workers) changes it. Locally the batches run in order
on one model. On Ray (``collate --ray_address``) main batch ``i`` goes to worker ``i % n_workers`` (and so
does pre-pass batch ``i``, whose values that worker keeps when ``reuse``); each worker keeps its own exact
top-K / hashed samples and returns them to be merged, and moments are folded on the driver batch by batch
in plan order. Since every batch has the same windows in both runs, a Ray run writes the same records,
byte for byte, as a local run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from neuron_explainer.collation.builder import CollationConfig


@dataclass(frozen=True)
class Plan:
    """Which windows each forward takes, in order: a pure function of the corpus size and the config."""

    prepass: list[np.ndarray]
    """Batches of the quantile pre-pass: ``quantile_windows`` evenly spaced windows, ascending."""
    main: list[np.ndarray]
    """Batches of the main pass; with ``reuse`` the pre-pass's batches first, then the other windows."""
    reuse: bool

    @classmethod
    def make(cls, n_windows: int, config: CollationConfig, bytes_per_window: int) -> Plan:
        picks = np.unique(np.linspace(0, n_windows - 1, min(config.quantile_windows, n_windows)).round())
        picks = picks.astype(np.int64)
        size = config.batch_size
        prepass = [picks[i : i + size] for i in range(0, len(picks), size)]
        reuse = len(picks) * bytes_per_window <= config.reuse_prepass_bytes
        rest = np.setdiff1d(np.arange(n_windows, dtype=np.int64), picks) if reuse else np.arange(n_windows)
        main = (prepass if reuse else []) + [rest[i : i + size] for i in range(0, len(rest), size)]
        return cls(prepass, main, reuse)
