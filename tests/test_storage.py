"""The BlobStore contract, run against a real folder and real Azurite, and what each store adds."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from azure.storage.blob.aio import BlobServiceClient

from neuron_explainer.errors import BadInput, UpstreamUnavailable
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.base import BlobStore, PreconditionFailed
from neuron_explainer.storage.local import LocalStore, content_etag
from neuron_explainer.storage.locations import open_store
from tests.azurite import free_port

REPO = Path(__file__).resolve().parent.parent


def _container() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _port(connection_string: str) -> str:
    return connection_string.split("127.0.0.1:")[1].split("/")[0]


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


@pytest.mark.parametrize("path", ["../escape.json", "/etc/passwd", "a/../../b", "a//b", "", "./a", "a\\..\\b"])
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
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["x.json"]  # no temp, no sidecar lock
    assert [p.parent.name for p in tmp_path.rglob("*.lock")] == [".locks"]  # one of the 64 striped locks
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
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(who)], cwd=REPO) for who in range(3)]
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
    store = open_store(f"http://127.0.0.1:{_port(azurite)}/devstoreaccount1/{name}/data", connection_string="")
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


async def test_a_bare_404_from_something_that_is_not_a_blob_service_is_not_a_miss() -> None:
    """A proxy or web server answering 404 at a wrong URL must not look like "every node is missing"."""

    class NotFoundEverywhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFoundEverywhere)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    store = open_store(f"http://127.0.0.1:{server.server_port}/devstoreaccount1/data", connection_string="")
    try:
        with pytest.raises(UpstreamUnavailable, match="not answering as an Azure blob service"):
            await store.get("0/1.json")
        with pytest.raises(UpstreamUnavailable, match="not answering as an Azure blob service"):
            await store.list("")
    finally:
        await store.close()
        server.shutdown()
        server.server_close()
        thread.join()


async def test_a_service_that_never_answers_times_out_as_configured() -> None:
    """Connections complete (the kernel's backlog accepts them) but no reply ever comes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = AzureStore(
            "data",
            account_url=f"http://127.0.0.1:{port}/devstoreaccount1",
            read_timeout_s=0.3,
            retry_total=1,
            retry_backoff_s=0.1,
        )
        started = time.monotonic()
        try:
            with pytest.raises(UpstreamUnavailable, match="cannot reach"):
                await store.get("0/1.json")
        finally:
            await store.close()
        assert time.monotonic() - started < 5


async def test_unreachable_service_fails_fast_with_upstream_unavailable() -> None:
    port = free_port()  # nothing listens here
    store = open_store(f"http://127.0.0.1:{port}/devstoreaccount1/data/prefix", connection_string="")
    try:
        for attempt in (store.get("0/1.json"), store.put("0/1.json", b"x"), store.list("0/")):
            started = time.monotonic()
            with pytest.raises(UpstreamUnavailable) as failure:
                await attempt
            assert time.monotonic() - started < 10
            assert failure.value.fields["location"] == f"http://127.0.0.1:{port}/devstoreaccount1/data/prefix/"
            assert "cannot reach" in failure.value.message
    finally:
        await store.close()
