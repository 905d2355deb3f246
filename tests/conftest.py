"""Session-wide test fixtures shared by every stream's tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.local import LocalStore
from tests.azurite import AzuriteProcess
from tests.fake_openai import FakeOpenAI, serve_in_thread


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """A connection string to one Azurite blob service for the whole session (stopped by pid at the end).

    Tests share it: give each test its own container (e.g. ``f"t-{uuid.uuid4().hex[:12]}"``).
    """
    with AzuriteProcess() as connection_string:
        yield connection_string


@pytest.fixture(params=["local", "azure"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """The same test on a folder and on a fresh Azurite container (under a prefix)."""
    s: BlobStore
    if request.param == "local":
        s = LocalStore(tmp_path / "root")
    else:
        s = AzureStore(
            f"t-{uuid.uuid4().hex[:16]}", "some/prefix", connection_string=request.getfixturevalue("azurite")
        )
    yield s
    await s.close()


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeOpenAI, str]]:
    """An OpenAI-protocol server on loopback (in a thread, so a server subprocess can reach it) and its URL."""
    fake = FakeOpenAI()
    with serve_in_thread(fake) as url:
        yield fake, url


@pytest.fixture
def calm_fake(fake: tuple[FakeOpenAI, str]) -> None:
    """No leftover faults or latency from the previous test (modules opt in with ``usefixtures``)."""
    fake[0].faults.clear()
    fake[0].latency_s = 0.0
