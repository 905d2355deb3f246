"""Read-path benchmark: one GraphQL query for the top activations of 100 nodes, from Azurite.

Baselines, in the same run:
- the physical limit: the same 100 blobs downloaded concurrently by one raw ``azure-storage-blob`` aio
  client (one connection pool, every download in flight at once): what the store itself allows here.
  Target: cold GraphQL time / that <= 1.5 (the server adds at most half again: decode, GraphQL, JSON);
- the original server's way, as information: 100 sequential downloads, each through a fresh
  ``BlobClient`` (a new HTTP session per record): sequential / cold (was a target >= 5 in issue 2).
Target: cold / warm (cached) >= 20.
Run: ``.venv/bin/python bench/reads.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
from azure.storage.blob import BlobClient, BlobServiceClient  # noqa: E402
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient  # noqa: E402

from bench.lines import report  # noqa: E402
from tests.azurite import AzuriteProcess  # noqa: E402
from tests.fixtures.synthetic import synthetic_blobs  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

N_NODES = 100
LAYER = 3
RECORDS_PATH = "gpt2_small_data/collated-activations"
CONTAINER = "bench"


async def concurrent_raw(conn: str, names: list[str]) -> float:
    """Every blob in flight at once through one raw aio client: the store's own limit on this machine."""
    async with AsyncBlobServiceClient.from_connection_string(conn) as service:
        container = service.get_container_client(CONTAINER)
        await container.get_container_properties()  # connect outside the timing

        async def one(name: str) -> bytes:
            stream = await container.download_blob(name)
            return await stream.readall()

        start = time.perf_counter()
        await asyncio.gather(*(one(n) for n in names))
        return time.perf_counter() - start


def main() -> int:
    with AzuriteProcess() as conn:
        service = BlobServiceClient.from_connection_string(conn)
        container = service.get_container_client(CONTAINER)
        container.create_container()
        blobs = synthetic_blobs(RECORDS_PATH, LAYER, N_NODES, seed=1)
        for name, data in blobs.items():
            container.upload_blob(name, data, overwrite=True)
        names = sorted(blobs)
        total_mb = sum(len(b) for b in blobs.values()) / 1e6

        def sequential_raw() -> float:
            # What the server we replace did per record: a fresh client (it opened a new HTTP session
            # per call) and one whole-blob download, one after another.
            start = time.perf_counter()
            for name in names:
                BlobClient.from_connection_string(conn, CONTAINER, name).download_blob().readall()
            return time.perf_counter() - start

        sequential_raw()  # import and warm-up costs stay out of the baseline
        raw_times = [sequential_raw() for _ in range(3)]
        raw = statistics.median(raw_times)
        asyncio.run(concurrent_raw(conn, names))
        physical = statistics.median([asyncio.run(concurrent_raw(conn, names)) for _ in range(5)])

        port = conn.split("BlobEndpoint=http://127.0.0.1:")[1].split("/")[0]
        data_root = f"http://127.0.0.1:{port}/devstoreaccount1/{CONTAINER}/"
        fields = " ".join(
            f'n{i}: node(id: "gpt2-small/mlp_neuron/{LAYER}/{i}") {{ topActivations {{ tokens activations }} }}'
            for i in range(N_NODES)
        )
        query = "{ " + fields + " }"
        cold_times, warm_times = [], []
        for _ in range(3):  # a fresh server each time: cold means nothing cached in the process
            with (
                ServerProcess(
                    ["--run_model", "False", "--data_root", data_root], env={"AZURE_STORAGE_CONNECTION_STRING": conn}
                ) as server,
                httpx.Client(timeout=120) as client,
            ):
                client.get(f"{server.url}/health")  # open the HTTP connection outside the timing
                start = time.perf_counter()
                raw_body = client.post(f"{server.url}/graphql", json={"query": query}).content
                cold_times.append(time.perf_counter() - start)  # to the last byte; parsing is the client's
                body = orjson.loads(raw_body)
                assert "errors" not in body, body.get("errors")
                assert len(body["data"]) == N_NODES
                for _ in range(5):
                    start = time.perf_counter()
                    again = client.post(f"{server.url}/graphql", json={"query": query}).content
                    warm_times.append(time.perf_counter() - start)
                    assert orjson.loads(again) == body
        cold, warm = statistics.median(cold_times), statistics.median(warm_times)
    print(
        f"{N_NODES} records, {total_mb:.1f} MB; concurrent raw downloads {physical * 1e3:.0f} ms, sequential raw "
        f"downloads {raw * 1e3:.0f} ms, GraphQL cold {cold * 1e3:.0f} ms, warm {warm * 1e3:.1f} ms"
    )
    print(f"  sequential raw / cold GraphQL: {raw / cold:.2f} (information; the original server's way)")
    ok = report("reads_cold_graphql_over_concurrent_raw", cold / physical, "<=", 1.5, digits=2)
    ok &= report("reads_cold_over_warm", cold / warm, ">=", 20, digits=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
