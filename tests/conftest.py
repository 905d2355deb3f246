"""Session-wide test fixtures shared by every stream's tests."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub (it reads these once): in-process servers must never try the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore
from neuron_explainer.storage.local import LocalStore
from tests.azurite import AzuriteProcess
from tests.fake_openai import FakeOpenAI, serve_in_thread
from tests.ray_cluster import RayCluster
from tests.server import EMBEDDED_DEFAULT, FAULTY_NODE, ServerProcess

# ---- running the suite on several workers (pytest-xdist: ``-n 2 --dist loadscope --no-loadscope-reorder``) --
SHARED_GROUPS = {
    "test_ray_backend": "ray",  # one two-node Ray cluster (session fixture) for both Ray modules
    "test_ray_collate": "ray",
    "test_browser": "embedded-default",  # one embedded-default server for the browser and first-hour tests
    "test_first_hour": "embedded-default",
}
"""Modules whose session fixtures are expensive run on one worker together; every other module is a unit
of its own, so its module-scoped servers start once."""
HEAVY_FIRST = ("ray", "embedded-default", "test_faults", "test_exposed", "test_fuzz", "test_jobs_cluster")
"""Longest units first: workers take units in collection order, so the long ones do not start last."""


def work_unit(nodeid: str) -> str:
    """``tests/test_ray_collate.py::test_x`` -> ``ray``; ``tests/test_jobs.py::test_y`` -> ``test_jobs``."""
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return SHARED_GROUPS.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))  # stable: order in a unit is kept


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadScopeScheduling:
    """Module-scoped scheduling, with the shared groups above as one unit each. (xdist's own
    ``--dist loadgroup`` marks do nothing under pytest 9.2: it renames ``item._nodeid``, which pytest no
    longer reads.)"""

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return SharedFixtureScheduling(config, log)


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


@pytest.fixture(scope="session")
async def embedder() -> AsyncIterator[SentenceEmbedder]:
    """One local sentence-embedding model for the session (loading it costs ~5 s of CPU)."""
    e = SentenceEmbedder()
    yield e
    await e.close()


@pytest.fixture
def calm_fake(fake: tuple[FakeOpenAI, str]) -> None:
    """No leftover faults or latency from the previous test (modules opt in with ``usefixtures``)."""
    fake[0].faults.clear()
    fake[0].latency_s = 0.0


@pytest.fixture(scope="session")
def embedded_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server ``bash scripts/dev.sh serve`` starts (the embedded default on a fresh store), shared by
    the first-hour and browser tests; with JSON logs, and one test fault: starting a job on
    ``FAULTY_NODE`` raises a plain ``RuntimeError`` (what a bug looks like to the error masking)."""
    store = tmp_path_factory.mktemp("embedded-default-store")
    args = [*EMBEDDED_DEFAULT, "--data_root", str(store), "--log_format", "json"]
    env = {"NEURON_EXPLAINER_TEST_FAULTS": json.dumps({"internal_node": FAULTY_NODE}), "OPENAI_API_KEY": ""}
    with ServerProcess(args, env=env, startup_timeout=300) as server:
        yield server


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A real two-node Ray cluster on this machine (``tests/ray_cluster.py``), started on first use and shared
    by every Ray test; this process joins it as a driver (in-process servers use that connection). Stopped
    at the end of the session, with a check that none of its processes is left."""
    from neuron_explainer.inference.ray_backend import connect, disconnect

    cluster = RayCluster().start()
    try:
        connect(cluster.address, 5.0)
        yield cluster
    finally:
        disconnect()
        left = cluster.stop()
    assert not left, f"Ray processes left running: {left}"
