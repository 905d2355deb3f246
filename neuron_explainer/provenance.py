"""Where a value came from: stored data or the live model."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class DataSource(enum.Enum):
    STORED = "stored"
    """Read from a dataset in blob storage."""
    LIVE = "live"
    """Computed by the running model."""
    AUTO = "auto"
    """Stored when a dataset has it, otherwise live when a model runs."""


@dataclass(frozen=True, slots=True)
class Provenance:
    source: DataSource
    dataset: str | None = None
    """The dataset's name (stored values, or live values written back to it)."""
    model: str | None = None
    computed_at: datetime | None = None
