"""open_store: every location form, against real Azurite where it matters, and clear errors."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from neuron_explainer.errors import BadInput, UpstreamUnavailable
from neuron_explainer.storage.azure import AzureStore
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.locations import open_store


def _container() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


def _port(connection_string: str) -> str:
    return connection_string.split("127.0.0.1:")[1].split("/")[0]


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


async def test_every_azurite_form_reaches_the_same_blobs(azurite: str, monkeypatch: pytest.MonkeyPatch) -> None:
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
    store = open_store(f"http://127.0.0.1:{_port(azurite)}/devstoreaccount1/{_container()}", connection_string=other)
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
