"""Records on Azurite for the hardening tests (guard, faults, fuzz) and the load benchmark.

``upload(connection_string, container)`` writes a tiny-gpt2 dataset index and the records of
``N_NODES`` MLP neurons of layer 0 (a "cat/dog" neuron each, different seeds) plus one attention head;
``data_root(connection_string, container)`` is the ``--data_root`` that reads them.
"""

from __future__ import annotations

import dataclasses

from azure.storage.blob import BlobServiceClient

from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.nodes import NodeKind
from neuron_explainer.storage.datasets import INDEX_BLOB, DatasetSpec, encode_index
from tests.explain_records import head_record, neuron_record

MLP = DatasetSpec("tiny-mlp", "tiny-gpt2", NodeKind.MLP_NEURON, None, "tiny/mlp/records", "tiny/mlp/explanations")
HEADS = DatasetSpec(
    "tiny-heads", "tiny-gpt2", NodeKind.ATTENTION_HEAD, None, "tiny/heads/records", "tiny/heads/explanations"
)
N_NODES = 40
HEAD = "tiny-gpt2/attention_head/0/1"


def neuron(index: int) -> str:
    return f"tiny-gpt2/mlp_neuron/0/{index}"


def blobs() -> dict[str, bytes]:
    out = {INDEX_BLOB: encode_index([MLP, HEADS])}
    for i in range(N_NODES):
        record = dataclasses.replace(neuron_record(seed=i), index=i)
        out[f"{MLP.records_path}/0/{i}.json"] = encode_neuron_record(record)
    out[f"{HEADS.records_path}/0/1.json"] = encode_neuron_record(head_record())
    return out


def upload(connection_string: str, container: str) -> None:
    client = BlobServiceClient.from_connection_string(connection_string).get_container_client(container)
    if not client.exists():
        client.create_container()
    for name, data in blobs().items():
        client.upload_blob(name, data, overwrite=True)


def blob_port(connection_string: str) -> int:
    endpoint = next(p for p in connection_string.split(";") if p.startswith("BlobEndpoint="))
    return int(endpoint.split(":")[-1].split("/")[0])


def data_root(connection_string: str, container: str) -> str:
    return f"http://127.0.0.1:{blob_port(connection_string)}/devstoreaccount1/{container}/"


def list_blobs(connection_string: str, container: str, prefix: str) -> dict[str, bytes]:
    client = BlobServiceClient.from_connection_string(connection_string).get_container_client(container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs(name_starts_with=prefix)}
