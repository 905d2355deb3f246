"""Export and import in peers' formats (Neuronpedia's explanation export, delphi's per-latent result files),
through the ``neuron-explainer export|import`` commands: round trips of what jobs stored, and files written
the way the peers write them."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

import pytest

from neuron_explainer.activation_server.main import cli
from neuron_explainer.activations.codec import encode_neuron_record
from neuron_explainer.activations.records import NeuronRecord
from neuron_explainer.explanations.classification import ClassifiedExplanation
from neuron_explainer.explanations.embeddings import SentenceEmbedder
from neuron_explainer.explanations.llm import LlmClient, LlmSettings
from neuron_explainer.explanations.methods import MethodRegistry
from neuron_explainer.jobs import ExplanationWriter, JobManager
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.storage.datasets import INDEX_BLOB, DatasetRegistry, DatasetSpec, encode_index, record_path
from neuron_explainer.storage.local import LocalStore
from neuron_explainer.storage.reader import RecordReader, StoredExplanation
from tests.fake_openai import FakeOpenAI
from tests.scorer_records import cat_neuron

pytestmark = pytest.mark.usefixtures("calm_fake")

DATA = DatasetSpec("cats", "tiny-gpt2", NodeKind.MLP_NEURON, None, "cats/records", "cats/explanations")
LATENTS = DatasetSpec(
    "lat", "tiny-gpt2", NodeKind.MLP_AUTOENCODER_LATENT, "ae-tiny-mlp", "lat/records", "lat/explanations"
)
CAT = NodeId("tiny-gpt2", NodeKind.MLP_NEURON, 0, 7)
METHODS = ["token-lookup", "detection", "fuzzing", "embedding"]


async def _store(root: Path) -> LocalStore:
    store = LocalStore(root)
    await store.put(INDEX_BLOB, encode_index([DATA, LATENTS]))
    await store.put(record_path(DATA, 0, 7), encode_neuron_record(cat_neuron()))
    return store


def _reader(store: LocalStore) -> RecordReader:
    return RecordReader(store, DatasetRegistry([DATA, LATENTS]), explanation_methods=MethodRegistry.scorer_names())


@pytest.fixture
async def scored_store(tmp_path: Path, fake: tuple[FakeOpenAI, str], embedder: SentenceEmbedder) -> Path:
    """A store where one job scored the cat neuron with four methods and another with one."""
    store = await _store(tmp_path / "source")
    reader = _reader(store)
    llm = LlmClient(LlmSettings(api_key="test", base_url=fake[1], max_retries=0))

    async def load(node: NodeId) -> NeuronRecord:
        return (await reader.get_record(node)).record

    manager = JobManager(MethodRegistry(llm, embedder=embedder), load, persist=ExplanationWriter(reader))
    for text, methods in [("the word cat", METHODS), ("the word sat", ["detection"])]:
        job = await manager.score(CAT, text, methods)
        assert await job.wait() is not None
    await manager.close()
    await llm.close()
    return tmp_path / "source"


async def _run(*argv: str) -> None:
    """The command as a user runs it (its own event loop, here on a thread of the test)."""

    def run() -> object:
        try:
            cli(list(argv))
        except SystemExit as done:
            return done.code
        return None

    assert await asyncio.to_thread(run) == 0


def _rows(found: list[StoredExplanation]) -> set[tuple[str | None, str, float | None]]:
    return {(e.method, e.text, None if e.score is None else round(e.score, 12)) for e in found}


async def test_neuronpedia_round_trip(scored_store: Path, tmp_path: Path) -> None:
    before = await _reader(LocalStore(scored_store)).get_explanations(CAT)
    await _run("export", "--format", "neuronpedia", "--data_root", str(scored_store), "--out", str(tmp_path / "np"))
    (batch,) = (tmp_path / "np" / "v1" / "tiny-gpt2" / "0-mlp_neuron" / "explanations").glob("batch-*.jsonl.gz")
    rows = [json.loads(line) for line in gzip.decompress(batch.read_bytes()).decode().splitlines()]
    assert {r["description"] for r in rows} == {"the word cat", "the word sat"}
    cat = next(r for r in rows if r["description"] == "the word cat")
    assert cat["modelId"] == "tiny-gpt2" and cat["layer"] == "0-mlp_neuron" and cat["index"] == "7"
    assert cat["scoreV1"] == next(e.score for e in before if e.method == "token-lookup")  # simulation first
    await _store(tmp_path / "target")
    await _run(
        "import", "--format", "neuronpedia", "--data_root", str(tmp_path / "target"), "--input", str(tmp_path / "np")
    )
    after = await _reader(LocalStore(tmp_path / "target")).get_explanations(CAT)
    assert _rows(after) == _rows(before) and len(after) == 5


async def test_delphi_round_trip_keeps_every_example(scored_store: Path, tmp_path: Path) -> None:
    before = await _reader(LocalStore(scored_store)).get_explanations(CAT)
    await _run("export", "--format", "delphi", "--data_root", str(scored_store), "--out", str(tmp_path / "run"))
    stem = "layers.0.mlp_neuron_latent7.txt"
    assert json.loads((tmp_path / "run" / "explanations" / stem).read_text()) == "the word cat"
    fuzz = json.loads((tmp_path / "run" / "scores" / "fuzz" / stem).read_text())
    assert {"str_tokens", "activations", "distance", "activating", "prediction", "probability", "correct"} <= set(
        fuzz[0]
    )
    assert all(e["correct"] == (e["prediction"] == e["activating"]) for e in fuzz)
    await _store(tmp_path / "target")
    await _run("import", "--format", "delphi", "--data_root", str(tmp_path / "target"), "--input", str(tmp_path / "run"),
         "--model", "tiny-gpt2")  # fmt: skip
    after = await _reader(LocalStore(tmp_path / "target")).get_explanations(CAT)
    expected = {e for e in _rows(before) if e[0] in ("detection", "fuzzing", "embedding") and e[1] == "the word cat"}
    assert _rows(after) == expected
    raw_before = {
        e.method: e.raw for e in before if e.text == "the word cat" and isinstance(e.raw, ClassifiedExplanation)
    }
    assert {e.method: e.raw for e in after} == raw_before  # examples, labels, answers, marks: all kept


async def test_import_files_written_the_peers_way(tmp_path: Path) -> None:
    """A delphi run (its module names, no extra keys) and a Neuronpedia export (no per-method scores)."""
    run = tmp_path / "run"
    (run / "explanations").mkdir(parents=True)
    (run / "scores" / "detection").mkdir(parents=True)
    (run / "explanations" / "layers.1_latent5.txt").write_text(json.dumps("French words"))
    examples = [
        {"str_tokens": [" le", " chat"], "activations": [3.0, 1.0], "distance": 0, "activating": True,
         "prediction": True, "probability": None, "correct": True},
        {"str_tokens": [" the", " cat"], "activations": [0.0, 0.0], "distance": -1, "activating": False,
         "prediction": True, "probability": None, "correct": False},
        {"str_tokens": [" a", " dog"], "activations": [0.0, 0.0], "distance": -1, "activating": False,
         "prediction": False, "probability": None, "correct": True},
        {"str_tokens": [" un"], "activations": [2.0], "distance": 1, "activating": True,
         "prediction": None, "probability": None, "correct": None},
    ]  # fmt: skip
    (run / "scores" / "detection" / "layers.1_latent5.txt").write_text(json.dumps(examples))
    export = tmp_path / "np.jsonl.gz"
    row = {"modelId": "gpt2-small", "layer": "1-res-jb", "index": "5", "description": "French text", "scoreV1": 0.42}
    export.write_bytes(gzip.compress((json.dumps(row) + "\n").encode()))
    root = tmp_path / "target"
    await _store(root)
    await _run("import", "--format", "delphi", "--data_root", str(root), "--input", str(run), "--model", "tiny-gpt2",
         "--kind", "ae-tiny-mlp")  # fmt: skip
    await _run("import", "--format", "neuronpedia", "--data_root", str(root), "--input", str(export), "--model", "tiny-gpt2",
         "--source_map", "res-jb=ae-tiny-mlp")  # fmt: skip
    latent = NodeId("tiny-gpt2", NodeKind.MLP_AUTOENCODER_LATENT, 1, 5, autoencoder="ae-tiny-mlp")
    found = {(e.method, e.text): e for e in await _reader(LocalStore(root)).get_explanations(latent)}
    detection = found[("detection", "French words")]
    assert detection.score == pytest.approx((1 / 1 + 1 / 2) / 2)  # TPR 1, TNR 1/2; the unparsed example left out
    assert len(detection.raw.scored_classification.examples) == 3  # type: ignore[union-attr]
    assert found[(None, "French text")].score == 0.42 and found[(None, "French text")].dataset == "lat"
