"""Session-wide test fixtures shared by every stream's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.azurite import AzuriteProcess


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A connection string to one Azurite blob service for the whole session (stopped by pid at the end).

    Tests share it: give each test its own container (e.g. ``f"t-{uuid.uuid4().hex[:12]}"``).
    """
    with AzuriteProcess() as connection_string:
        yield connection_string
