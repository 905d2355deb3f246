"""The read path end to end: a real server over HTTP serving hand-written TDB-format files,
from a local folder and from Azurite, with every bad input answered by a typed error."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from tests.server import ServerProcess, error_codes

FIXTURES = Path(__file__).parent / "fixtures" / "tdb"
MLP_DIR = FIXTURES / "gpt2_small_data" / "collated-activations"
HEAD_DIR = FIXTURES / "gpt2_small" / "attn_write_norm" / "collated-activations-by-token-pair"
EXPL_DIR = FIXTURES / "gpt2_small_data" / "explanations"
CORRUPT = (0, 99)
CORRUPT_RECORDS = {(0, 98), (0, 99)}


def _raw(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _has_nan_activation(path: Path) -> bool:
    raw = _raw(path)
    records = raw.get("most_positive_activation_records", []) + (raw.get("random_sample") or [])
    return any(a is None or (isinstance(a, float) and math.isnan(a)) for r in records for a in r["activations"])


def _records(path: Path) -> list[tuple[int, int, Path]]:
    out = []
    for f in sorted(path.glob("*/*.json")):
        layer, index = int(f.parent.name), int(f.stem)
        if (layer, index) not in CORRUPT_RECORDS and not _has_nan_activation(f):
            out.append((layer, index, f))
    return out


def _upload_fixtures(conn: str, container: str) -> None:
    service = BlobServiceClient.from_connection_string(conn)
    client = service.get_container_client(container)
    client.create_container()
    for f in FIXTURES.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".jsonl"):
            client.upload_blob(str(f.relative_to(FIXTURES)), f.read_bytes(), overwrite=True)


@pytest.fixture(scope="module", params=["folder", "azurite"])
def server(request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    env: dict[str, str] = {}
    if request.param == "folder":
        root = str(FIXTURES)
    else:
        conn: str = request.getfixturevalue("azurite")
        _upload_fixtures(conn, "mirror")
        port = next(p.split(":")[-1].split("/")[0] for p in conn.split(";") if p.startswith("BlobEndpoint="))
        root = f"http://127.0.0.1:{port}/devstoreaccount1/mirror/"
        env["AZURE_STORAGE_CONNECTION_STRING"] = conn
    with ServerProcess(["--run_model", "False", "--data_root", root], env=env) as s:
        yield s


RECORD_QUERY = """
query($id: ID!) {
  node(id: $id) {
    id kind layer index maxActivation
    topActivations(first: 100) { tokens activations normalizedActivations attentionRows provenance { source dataset } }
    randomSample { tokens activations }
    stats { mean variance skewness kurtosis quantileBoundaries }
  }
}
"""


def _same_floats(got: list[float | None], want: list[float]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if w is None or (isinstance(w, float) and math.isnan(w)):
            assert g is None
        else:
            assert g == pytest.approx(w, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    "layer,index,path", _records(MLP_DIR), ids=lambda v: str(v) if not isinstance(v, Path) else v.name
)
def test_mlp_records_equal_the_files(server: ServerProcess, layer: int, index: int, path: Path) -> None:
    body = server.query(RECORD_QUERY, {"id": f"gpt2-small/mlp_neuron/{layer}/{index}"})
    assert "errors" not in body, body
    node = body["data"]["node"]
    raw = _raw(path)
    top = raw["most_positive_activation_records"]
    assert [r["tokens"] for r in node["topActivations"]] == [r["tokens"] for r in top]
    for got, want in zip(node["topActivations"], top, strict=True):
        _same_floats(got["activations"], want["activations"])
        assert got["attentionRows"] is None
        assert got["provenance"] == {"source": "STORED", "dataset": got["provenance"]["dataset"]}
    assert node["maxActivation"] == pytest.approx(max(a for r in top for a in r["activations"]))
    assert [r["tokens"] for r in node["randomSample"]] == [r["tokens"] for r in raw.get("random_sample", [])]
    # Normalization as the original's read routes: max over top and random records.
    pool = [a for r in top + raw.get("random_sample", []) for a in r["activations"]]
    peak = max(0.0, max(pool))
    for got in node["topActivations"]:
        for value, norm in zip(got["activations"], got["normalizedActivations"], strict=True):
            assert norm == pytest.approx(0.0 if peak == 0 else max(value / (peak - 1e-5), 0.0), rel=1e-6, abs=1e-9)
    stats = node["stats"]
    for key in ("mean", "variance", "skewness", "kurtosis"):
        want = raw.get(key)
        if want is None or (isinstance(want, float) and math.isnan(want)):
            assert stats[key] is None
        else:
            assert stats[key] == pytest.approx(want)


def _rows_by_hand(flat: list[float], n: int) -> list[list[float]]:
    """Independent of the server's code: rows 1..W then W, W from the missing triangular count."""
    missing = n * (n + 1) // 2 - len(flat)
    k = 0
    while k * (k + 1) // 2 < missing:
        k += 1
    assert k * (k + 1) // 2 == missing
    window = n - k
    rows, pos = [], 0
    for i in range(n):
        width = min(i + 1, window)
        rows.append(flat[pos : pos + width])
        pos += width
    return rows


@pytest.mark.parametrize(
    "layer,index,path", _records(HEAD_DIR), ids=lambda v: str(v) if not isinstance(v, Path) else v.name
)
def test_attention_rows_equal_the_files(server: ServerProcess, layer: int, index: int, path: Path) -> None:
    body = server.query(RECORD_QUERY, {"id": f"gpt2-small/attention_head/{layer}/{index}"})
    assert "errors" not in body, body
    node = body["data"]["node"]
    assert node["kind"] == "ATTENTION_HEAD"
    for got, want in zip(node["topActivations"], _raw(path)["most_positive_activation_records"], strict=True):
        assert got["tokens"] == want["tokens"]
        _same_floats(got["activations"], want["activations"])
        expected_rows = _rows_by_hand(want["activations"], len(want["tokens"]))
        assert len(got["attentionRows"]) == len(want["tokens"])
        for g, w in zip(got["attentionRows"], expected_rows, strict=True):
            _same_floats(g, w)


def test_explanations_equal_the_files(server: ServerProcess) -> None:
    files = sorted(EXPL_DIR.glob("*/*.jsonl"))
    assert files, "fixtures must include explanation files"
    for f in files:
        layer, index = int(f.parent.name), int(f.stem)
        if (layer, index) == CORRUPT:
            continue
        body = server.query(
            "query($id: ID!) { node(id: $id) { explanations { text score dataset } } }",
            {"id": f"gpt2-small/mlp_neuron/{layer}/{index}"},
        )
        assert "errors" not in body, body
        raw = json.loads(f.read_text().strip())
        entries = raw.get("scored_explanations") or raw.get("scored_explanation_or_baseline_list")
        # Entries with null text (old "baseline" rows) are skipped, as the original's read route does.
        entries = [e for e in entries if e.get("explanation", e.get("explanation_or_baseline")) is not None]
        want = [e.get("explanation", e.get("explanation_or_baseline")) for e in entries]
        got = body["data"]["node"]["explanations"]
        assert [e["text"] for e in got] == want
        for g, e in zip(got, entries, strict=True):
            score = (e.get("scored_simulation") or {}).get("ev_correlation_score")
            if score is None or (isinstance(score, float) and math.isnan(score)):
                assert g["score"] is None
            else:
                assert g["score"] == pytest.approx(score)


def test_out_of_range_node_names_the_bound(server: ServerProcess) -> None:
    for node_id, bound in [
        ("gpt2-small/mlp_neuron/12/0", "11"),
        ("gpt2-small/mlp_neuron/0/3072", "3071"),
        ("gpt2-small/attention_head/0/12", "11"),
        ("gpt2-small/ae-resid-delta-mlp-v4/0/32768", "32767"),
    ]:
        body = server.query("query($id: ID!) { node(id: $id) { id } }", {"id": node_id})
        assert error_codes(body) == ["BAD_USER_INPUT"], body
        assert bound in body["errors"][0]["message"]


def test_malformed_ids(server: ServerProcess) -> None:
    for bad in [
        "",
        "gpt2-small",
        "gpt2-small/mlp_neuron/x/1",
        "gpt2-small/nope/1/1",
        "a/b/c/d/e",
        "gpt2-small/mlp_neuron/-1/0",
    ]:
        body = server.query("query($id: ID!) { node(id: $id) { id } }", {"id": bad})
        assert error_codes(body) == ["BAD_USER_INPUT"], (bad, body)


def test_missing_node_is_not_found_after_every_dataset(server: ServerProcess) -> None:
    body = server.query('{ node(id: "gpt2-small/mlp_neuron/11/3000") { topActivations { tokens } } }')
    assert error_codes(body) == ["NOT_FOUND"], body
    assert body["errors"][0]["extensions"].get("tried"), body


def test_corrupt_blob_is_named_and_other_fields_resolve(server: ServerProcess) -> None:
    layer, index = CORRUPT
    good_layer, good_index, _ = _records(MLP_DIR)[0]
    body = server.query(
        f'{{ bad: node(id: "gpt2-small/mlp_neuron/{layer}/{index}") {{ topActivations {{ tokens }} }}'
        f'   good: node(id: "gpt2-small/mlp_neuron/{good_layer}/{good_index}") {{ topActivations {{ tokens }} }} }}'
    )
    assert error_codes(body) == ["CORRUPT_DATA"], body
    assert f"{layer}/{index}.json" in body["errors"][0]["message"]
    assert body["data"]["good"]["topActivations"], body


def test_nan_activation_is_corrupt_data_naming_the_dataset(server: ServerProcess) -> None:
    nan_files = [
        f
        for f in sorted(MLP_DIR.glob("*/*.json"))
        if (int(f.parent.name), int(f.stem)) not in CORRUPT_RECORDS and _has_nan_activation(f)
    ]
    assert nan_files, "fixtures must include a record with a NaN activation"
    f = nan_files[0]
    node_id = f"gpt2-small/mlp_neuron/{f.parent.name}/{f.stem}"
    body = server.query(
        "query($id: ID!) { a: node(id: $id) { topActivations { activations } randomSample { activations } }"
        "                  b: node(id: $id) { stats { mean } } }",
        {"id": node_id},
    )
    assert error_codes(body) == ["CORRUPT_DATA"], body
    assert "non-finite" in body["errors"][0]["message"]
    assert body["data"]["b"]["stats"] is not None


def test_syntax_error_is_typed_not_500(server: ServerProcess) -> None:
    response = server.post("{ node(id: ")
    assert response.status_code in (200, 400)
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]


def test_datasets_and_node_listing(server: ServerProcess) -> None:
    body = server.query(
        "{ datasets { name model kind recordsPath } "
        '  nodes(model: "gpt2-small", kind: ATTENTION_HEAD, layer: 3, first: 5) '
        "  { totalCount edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }"
    )
    assert "errors" not in body, body
    assert any(d["recordsPath"].startswith("gpt2_small_data/collated-activations") for d in body["data"]["datasets"])
    page = body["data"]["nodes"]
    assert page["totalCount"] == 12
    assert [e["node"]["id"] for e in page["edges"]] == [f"gpt2-small/attention_head/3/{i}" for i in range(5)]
    nxt = server.query(
        'query($after: String) { nodes(model: "gpt2-small", kind: ATTENTION_HEAD, layer: 3, first: 10, after: $after)'
        " { edges { node { id } } pageInfo { hasNextPage } } }",
        {"after": page["pageInfo"]["endCursor"]},
    )
    assert [e["node"]["id"] for e in nxt["data"]["nodes"]["edges"]][0] == "gpt2-small/attention_head/3/5"
    assert nxt["data"]["nodes"]["pageInfo"]["hasNextPage"] is False


def test_unreachable_blob_service_is_upstream_unavailable() -> None:
    from tests.server import free_port

    dead = free_port()
    with ServerProcess(
        ["--run_model", "False", "--data_root", f"http://127.0.0.1:{dead}/devstoreaccount1/mirror/"],
        env={"AZURE_STORAGE_CONNECTION_STRING": ""},
    ) as s:
        body = s.query('{ node(id: "gpt2-small/mlp_neuron/0/0") { topActivations { tokens } } }', timeout=60)
        assert error_codes(body) == ["UPSTREAM_UNAVAILABLE"], body
        assert s.query("{ modelInfo { modelName } }")["data"]["modelInfo"]["modelName"] == "gpt2-small"
