"""``--write_root``: serve a read-only mirror and keep what the server writes somewhere of the user's."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from neuron_explainer.storage.base import PreconditionFailed
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.overlay import OverlayStore
from tests.fixtures.synthetic import synthetic_blobs
from tests.server import ServerProcess


async def test_overlay_reads_writable_first_and_writes_only_there(tmp_path: Path) -> None:
    base, top = LocalStore(tmp_path / "base"), LocalStore(tmp_path / "top")
    await base.put("a/x.json", b"base")
    store = OverlayStore(top, base)
    assert await store.get("a/x.json") == b"base"
    data, etag = await store.get_with_etag("a/x.json") or (b"", "?")
    assert (data, etag) == (b"base", "")  # only the base has it: writing it is create-only
    await store.put("a/x.json", b"mine", if_match=etag)
    with pytest.raises(PreconditionFailed):  # a second writer holding the same stale view loses
        await store.put("a/x.json", b"theirs", if_match=etag)
    assert await store.get("a/x.json") == b"mine"
    assert await base.get("a/x.json") == b"base"
    assert await store.list("a") == ["a/x.json"]


def _read_only(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        os.chmod(path, mode | (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH if path.is_dir() else 0))


def test_scoring_against_a_read_only_mirror_writes_to_write_root(tmp_path: Path) -> None:
    mirror, mine = tmp_path / "mirror", tmp_path / "mine"
    for name, data in synthetic_blobs("gpt2_small_data/collated-activations", 2, 1, seed=3).items():
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes(data)
    before = sorted(p.relative_to(mirror) for p in mirror.rglob("*"))
    _read_only(mirror)
    args = [
        "--run_model",
        "False",
        "--data_root",
        str(mirror),
        "--write_root",
        str(mine),
        "--neuron_method",
        "top-tokens",
    ]
    with ServerProcess(args) as server:
        started = server.query(
            'mutation { scoreExplanation(input: {nodeId: "gpt2-small/mlp_neuron/2/0", explanation: "the word cat"})'
            " { id status } }"
        )
        assert "errors" not in started, started
        job_id = started["data"]["scoreExplanation"]["id"]
        deadline = time.monotonic() + 60
        while True:
            job = server.query("query($id: ID!) { job(id: $id) { status error { code message } } }", {"id": job_id})
            status = job["data"]["job"]["status"]
            if status in ("COMPLETED", "FAILED") or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status == "COMPLETED", job
        shown = server.query('{ node(id: "gpt2-small/mlp_neuron/2/0") { explanations { text score method } } }')
        assert [e["text"] for e in shown["data"]["node"]["explanations"]] == ["the word cat"]
    assert sorted(p.relative_to(mirror) for p in mirror.rglob("*")) == before
    written = [p for p in mine.rglob("*.jsonl") if "_jobs" not in p.parts]
    assert len(written) == 1 and "by-method" in str(written[0])
    assert len(list((mine / "_jobs").glob("*.jsonl"))) == 1  # the job's event log goes there too
