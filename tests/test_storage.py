"""The BlobStore contract, run against a real folder and real Azurite; locations; the byte LRU."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from azure.storage.blob.aio import BlobServiceClient

from neuron_explainer.errors import BadInput, UpstreamUnavailable
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore, PreconditionFailed
from neuron_explainer.storage.cache import ByteLRU
from neuron_explainer.storage.local import LocalStore, content_etag
from neuron_explainer.storage.locations import open_store
from tests.azurite import free_port

REPO = Path(__file__).resolve().parent.parent


def _container() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _port(connection_string: str) -> str:
    return connection_string.split("127.0.0.1:")[1].split("/")[0]


@pytest.fixture(params=["local", "azure"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    s: BlobStore
    if request.param == "local":
        s = LocalStore(tmp_path / "root")
    else:
        s = AzureStore(_container(), "some/prefix", connection_string=request.getfixturevalue("azurite"))
    yield s
    await s.close()


async def _cas_append(s: BlobStore, path: str, item: int) -> int:
    """Append ``item`` to a JSON list blob by compare-and-swap; returns how many races it lost."""
    lost = 0
    while True:
        found = await s.get_with_etag(path)
        items = json.loads(found[0]) if found else []
        try:
            await s.put(path, json.dumps([*items, item]).encode(), if_match=found[1] if found else "")
            return lost
        except PreconditionFailed:
            lost += 1
            await asyncio.sleep(0.001 * (item % 5))


# --- the contract, on both stores -------------------------------------------------------------


async def test_missing_blob_is_none_not_an_error(store: BlobStore) -> None:
    assert await store.get("gpt2_small_data/collated-activations/0/0.json") is None
    assert await store.get_with_etag("x/y.json") is None
    assert await store.list("") == []
    assert await store.list("x/") == []


async def test_put_then_get_returns_the_bytes_and_a_changing_etag(store: BlobStore) -> None:
    e1 = await store.put("a/b/c.json", b'{"x": 1}')
    assert await store.get("a/b/c.json") == b'{"x": 1}'
    assert await store.get_with_etag("a/b/c.json") == (b'{"x": 1}', e1)
    e2 = await store.put("a/b/c.json", b'{"x": 2}')
    assert e2 != e1
    assert await store.get_with_etag("a/b/c.json") == (b'{"x": 2}', e2)
    assert await store.get("a/b") is None  # a "directory" is not a blob


async def test_list_is_recursive_sorted_and_by_string_prefix(store: BlobStore) -> None:
    for path in ["a/2.json", "a/1.json", "a/deep/3.json", "ab/4.json", "b/5.json"]:
        await store.put(path, b"{}")
    assert await store.list("a/") == ["a/1.json", "a/2.json", "a/deep/3.json"]
    assert await store.list("a") == ["a/1.json", "a/2.json", "a/deep/3.json", "ab/4.json"]
    assert await store.list("") == ["a/1.json", "a/2.json", "a/deep/3.json", "ab/4.json", "b/5.json"]
    assert await store.list("a/de") == ["a/deep/3.json"]
    assert await store.list("zzz/") == []


async def test_put_with_a_stale_etag_fails_and_keeps_the_newer_data(store: BlobStore) -> None:
    e1 = await store.put("n.jsonl", b"one")
    e2 = await store.put("n.jsonl", b"two", if_match=e1)
    with pytest.raises(PreconditionFailed):
        await store.put("n.jsonl", b"three", if_match=e1)
    assert await store.get_with_etag("n.jsonl") == (b"two", e2)


async def test_create_only_put(store: BlobStore) -> None:
    e1 = await store.put("new.json", b"first", if_match="")
    with pytest.raises(PreconditionFailed):
        await store.put("new.json", b"second", if_match="")
    assert await store.get_with_etag("new.json") == (b"first", e1)
    with pytest.raises(PreconditionFailed):  # an ETag cannot match a blob that is not there
        await store.put("absent.json", b"x", if_match=e1)
    assert await store.get("absent.json") is None


async def test_twenty_concurrent_cas_appenders_lose_nothing(store: BlobStore) -> None:
    lost = await asyncio.gather(*(_cas_append(store, "shared/list.json", i) for i in range(20)))
    data = await store.get("shared/list.json")
    assert data is not None
    assert sorted(json.loads(data)) == list(range(20))
    assert sum(lost) > 0, "the appenders never raced, so this test proved nothing"


@pytest.mark.parametrize(
    "path", ["../escape.json", "/etc/passwd", "a/../../b", "a//b", "", "./a", "a\\..\\b"]
)
async def test_paths_escaping_the_root_are_bad_input(store: BlobStore, path: str) -> None:
    with pytest.raises(BadInput):
        await store.get(path)
    with pytest.raises(BadInput):
        await store.put(path, b"x")
    with pytest.raises(BadInput):
        await store.list(path + "/" if path else "../")


# --- LocalStore specifics ---------------------------------------------------------------------


async def test_local_store_etag_is_a_content_hash_and_bookkeeping_is_hidden(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    etag = await store.put("d/x.json", b"payload")
    assert etag == content_etag(b"payload") == hashlib.sha256(b"payload").hexdigest()[:32]
    assert (tmp_path / "d" / "x.json").read_bytes() == b"payload"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [".x.json.lock", "x.json"]  # no temp left
    assert await store.list("") == ["d/x.json"]
    assert not (tmp_path.parent / "escape.json").exists()


def test_local_store_cas_is_atomic_across_processes(tmp_path: Path) -> None:
    """Three processes append to one blob at once through their own LocalStores: flock keeps every entry."""
    script = (
        "import asyncio, json, sys\n"
        "from neuron_explainer.storage.local import LocalStore\n"
        "from neuron_explainer.storage.base import PreconditionFailed\n"
        "async def main(root, who):\n"
        "    s = LocalStore(root)\n"
        "    for i in range(15):\n"
        "        while True:\n"
        "            found = await s.get_with_etag('log.json')\n"
        "            items = json.loads(found[0]) if found else []\n"
        "            try:\n"
        "                await s.put('log.json', json.dumps(items + [f'{who}-{i}']).encode(),\n"
        "                            if_match=found[1] if found else '')\n"
        "                break\n"
        "            except PreconditionFailed:\n"
        "                pass\n"
        "asyncio.run(main(sys.argv[1], sys.argv[2]))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(who)], cwd=REPO)
        for who in range(3)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    items = json.loads((tmp_path / "log.json").read_bytes())
    assert sorted(items) == sorted(f"{w}-{i}" for w in range(3) for i in range(15))


# --- AzureStore specifics ---------------------------------------------------------------------


async def test_azure_creates_its_container_on_first_write_only(azurite: str) -> None:
    name = _container()
    store = AzureStore(name, connection_string=azurite)
    service = BlobServiceClient.from_connection_string(azurite)
    try:
        assert await store.get("x.json") is None
        assert await store.list("") == []
        assert not await service.get_container_client(name).exists()
        await store.put("x.json", b"1")
        assert await service.get_container_client(name).exists()
    finally:
        await store.close()
        await service.close()


async def test_azure_prefixes_keep_stores_apart(azurite: str) -> None:
    name = _container()
    a = AzureStore(name, "mirror-a", connection_string=azurite)
    b = AzureStore(name, "mirror-b/", connection_string=azurite)
    root = AzureStore(name, connection_string=azurite)
    try:
        await a.put("0/1.json", b"a")
        await b.put("0/1.json", b"b")
        assert (await a.get("0/1.json"), await b.get("0/1.json")) == (b"a", b"b")
        assert await a.list("") == ["0/1.json"]
        assert await root.list("") == ["mirror-a/0/1.json", "mirror-b/0/1.json"]
        assert a.location.endswith(f"/devstoreaccount1/{name}/mirror-a/")
    finally:
        for s in (a, b, root):
            await s.close()


async def test_anonymous_reads_a_public_container_and_cannot_write(azurite: str) -> None:
    name = _container()
    service = BlobServiceClient.from_connection_string(azurite)
    await service.create_container(name, public_access="container")
    await service.get_container_client(name).upload_blob("data/0/5.json", b"public")
    await service.close()
    store = open_store(
        f"http://127.0.0.1:{_port(azurite)}/devstoreaccount1/{name}/data", connection_string=""
    )
    try:
        assert await store.get("0/5.json") == b"public"
        assert await store.get("0/6.json") is None
        assert await store.list("0/") == ["0/5.json"]
        with pytest.raises(UpstreamUnavailable) as denied:
            await store.put("0/7.json", b"nope")
        assert denied.value.fields["status"] == 403
    finally:
        await store.close()


async def test_max_concurrency_one_still_serves_many_concurrent_reads(azurite: str) -> None:
    store = AzureStore(_container(), connection_string=azurite, max_concurrency=1)
    try:
        await asyncio.gather(*(store.put(f"{i}.json", str(i).encode()) for i in range(20)))
        got = await asyncio.gather(*(store.get(f"{i}.json") for i in range(20)))
        assert got == [str(i).encode() for i in range(20)]
    finally:
        await store.close()


async def test_unreachable_service_fails_fast_with_upstream_unavailable() -> None:
    port = free_port()  # nothing listens here
    store = open_store(f"http://127.0.0.1:{port}/devstoreaccount1/data/prefix", connection_string="")
    try:
        for attempt in (store.get("0/1.json"), store.put("0/1.json", b"x"), store.list("0/")):
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable) as failure:
                await attempt
            assert time.monotonic() - started < 10
            assert (
                failure.value.fields["location"] == f"http://127.0.0.1:{port}/devstoreaccount1/data/prefix/"
            )
            assert "cannot reach" in failure.value.message
    finally:
        await store.close()


# --- open_store -------------------------------------------------------------------------------


def test_folder_locations_open_a_local_store(tmp_path: Path) -> None:
    for location in (str(tmp_path), tmp_path.as_uri(), f"{tmp_path}/"):
        store = open_store(location, connection_string="")
        assert isinstance(store, LocalStore) and store.root == tmp_path.resolve()
        assert store.location == tmp_path.resolve().as_uri()


def test_public_urls_open_anonymous_azure_stores() -> None:
    for location in (
        "https://openaipublic.blob.core.windows.net/neuron-explainer/",
        "az://openaipublic/neuron-explainer",
    ):
        store = open_store(location, connection_string="")
        assert isinstance(store, AzureStore)
        assert (store.container, store.prefix) == ("neuron-explainer", "")
        assert store.location == "https://openaipublic.blob.core.windows.net/neuron-explainer/"
    deep = open_store("az://openaipublic/neuron-explainer/gpt2_small_data/", connection_string="")
    assert deep.location == "https://openaipublic.blob.core.windows.net/neuron-explainer/gpt2_small_data/"


def test_development_storage_shortcut() -> None:
    store = open_store("az://devstoreaccount1/box/p", connection_string="UseDevelopmentStorage=true")
    assert store.location == "http://127.0.0.1:10000/devstoreaccount1/box/p/"


async def test_every_azurite_form_reaches_the_same_blobs(
    azurite: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _container()
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite)
    forms = [
        f"az://devstoreaccount1/{name}/root",
        f"http://127.0.0.1:{_port(azurite)}/devstoreaccount1/{name}/root/",
        f"{azurite};Container={name};Prefix=root",
    ]
    stores = [open_store(f) for f in forms]
    try:
        await stores[0].put("w/0.json", b"zero")
        await stores[1].put("w/1.json", b"one")
        await stores[2].put("w/2.json", b"two")
        for s in stores:
            assert await s.list("w/") == ["w/0.json", "w/1.json", "w/2.json"]
            assert await s.get("w/2.json") == b"two"
    finally:
        for s in stores:
            await s.close()


async def test_a_connection_string_for_another_account_is_not_used(azurite: str) -> None:
    other = "DefaultEndpointsProtocol=https;AccountName=someoneelse;AccountKey=a2V5"
    store = open_store(
        f"http://127.0.0.1:{_port(azurite)}/devstoreaccount1/{_container()}", connection_string=other
    )
    try:
        with pytest.raises(UpstreamUnavailable):  # anonymous: Azurite refuses the write
            await store.put("x.json", b"x")
    finally:
        await store.close()


@pytest.mark.parametrize(
    "location",
    [
        "",
        "s3://bucket/key",
        "az://",
        "az://account",
        "az://account/",
        "az://account/Not_A_Container/x",
        "https://acct.blob.core.windows.net/",
        "http://127.0.0.1:1/",
        "http://127.0.0.1:1/devstoreaccount1",
        "file://otherhost/x",
        "UseDevelopmentStorage=true",
        "AccountName=x;AccountKey=y",
        "Container=x;garbage",
        "az://devstoreaccount1/box/../up",
    ],
)
def test_unparseable_locations_are_bad_input(location: str) -> None:
    with pytest.raises(BadInput):
        open_store(location, connection_string="")


# --- ByteLRU ----------------------------------------------------------------------------------


def test_lru_evicts_least_recently_used_by_bytes() -> None:
    cache: ByteLRU[str, str] = ByteLRU(100)
    cache.put("a", "A", 40)
    cache.put("b", "B", 40)
    assert cache.get("a") == "A"  # a is now more recent than b
    cache.put("c", "C", 40)
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert cache.bytes_used == 80
    cache.put("big", "X", 101)  # larger than the whole cache: not stored, nothing evicted
    assert "big" not in cache and len(cache) == 2
    cache.put("a", "A2", 70)  # replacing re-measures: c (older) goes
    assert cache.get("a") == "A2" and "c" not in cache and cache.bytes_used == 70
    assert cache.evictions == 2


async def test_lru_entries_expire_after_ttl() -> None:
    cache: ByteLRU[str, int] = ByteLRU(10, ttl_s=0.05)
    cache.put("k", 1, 1)
    assert cache.get("k") == 1
    await asyncio.sleep(0.08)
    assert cache.get("k") is None and cache.bytes_used == 0


async def test_ten_concurrent_asks_load_once() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)
    release = asyncio.Event()
    calls = 0

    async def load() -> bytes:
        nonlocal calls
        calls += 1
        await release.wait()
        return b"blob"

    waiters = [asyncio.ensure_future(cache.get_or_load("k", len, load)) for _ in range(10)]
    await asyncio.sleep(0.01)
    release.set()
    assert await asyncio.gather(*waiters) == [b"blob"] * 10
    assert await cache.get_or_load("k", len, load) == b"blob"
    assert calls == 1 and cache.loads == 1 and cache.bytes_used == 4


async def test_a_failed_load_reaches_every_waiter_and_is_not_cached() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)
    calls = 0

    async def failing() -> bytes:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise UpstreamUnavailable("down", location="x")

    results = await asyncio.gather(
        *(cache.get_or_load("k", len, failing) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, UpstreamUnavailable) for r in results) and calls == 1

    async def missing() -> bytes | None:
        return None

    assert await cache.get_or_load("k", len, missing) is None
    assert "k" not in cache and calls == 1 and cache.loads == 2


async def test_a_cancelled_waiter_does_not_cancel_the_load_for_others() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)

    async def slow() -> bytes:
        await asyncio.sleep(0.05)
        return b"done"

    first = asyncio.ensure_future(cache.get_or_load("k", len, slow))
    second = asyncio.ensure_future(cache.get_or_load("k", len, slow))
    await asyncio.sleep(0.01)
    first.cancel()
    assert await second == b"done"
    assert first.cancelled() and cache.loads == 1


async def test_invalidate_during_a_load_keeps_the_stale_result_out() -> None:
    cache: ByteLRU[str, bytes] = ByteLRU(1000)
    release = asyncio.Event()

    async def load() -> bytes:
        await release.wait()
        return b"stale"

    pending = asyncio.ensure_future(cache.get_or_load("k", len, load))
    await asyncio.sleep(0.01)
    cache.invalidate("k")
    release.set()
    assert await pending == b"stale"
    assert "k" not in cache
