"""``neuron-explainer collate``: bad input is refused before any work; a good run writes a dataset."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from neuron_explainer.collation import main

CORPUS_TEXT = "The harbor was quiet. A gull landed on the mast and looked at the sea.\n" * 12


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("ne-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURON_EXPLAINER_HOME", str(folder))
        yield folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(CORPUS_TEXT)
    return path


def _args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["--model_name", "tiny-gpt2", "--corpus", str(corpus), "--out", str(out), "--no_progress", *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kinds", "mlp_neuron,bogus"], "unknown node kind 'bogus'"),
        (["--kinds", "ae-tiny-mlp"], "unknown node kind 'ae-tiny-mlp'"),  # autoencoder not loaded
        (["--mlp_autoencoder_name", "ae-nope"], "no autoencoder 'ae-nope' for tiny-gpt2"),
        (["--layers", "0,2"], "layer 2 out of range: tiny-gpt2 has 2 layers"),
        (["--top_k", "0"], "top_k must be at least 1"),
        (["--seq_len", "129"], "exceeds tiny-gpt2's context of 128 tokens"),
        (["--reuse_prepass_mb", "-1"], "--reuse_prepass_mb must be at least 0, got -1"),
    ],
)
def test_bad_arguments_are_refused_before_any_work(
    home: Path,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    assert main(_args(corpus, out, *extra)) == 2
    assert message in capsys.readouterr().err
    written = [p.name for p in out.rglob("*") if p.is_file() and ".locks" not in p.parts and not p.name.startswith(".")]
    assert written in ([], ["write-probe"])  # nothing but the probe: no checkpoint, record or index


def test_unusable_corpus_and_output_are_refused(
    home: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(_args(empty, tmp_path / "out")) == 2
    assert "holds no text" in capsys.readouterr().err
    assert main(_args(tmp_path / "missing", tmp_path / "out")) == 2
    assert "does not exist" in capsys.readouterr().err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(_args(corpus, blocker / "out")) == 2
    assert "cannot write to the output" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_run_writes_records_metadata_and_index(
    home: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = [
        "--kinds",
        "attention_head,ae-tiny-attn",
        "--attn_autoencoder_name",
        "ae-tiny-attn",
        "--layers",
        "1",
    ]
    args += ["--seq_len", "16", "--top_k", "3", "--random_k", "2", "--quantile_k", "1", "--batch_size", "4"]
    assert main(_args(corpus, out, *args)) == 0
    printed = capsys.readouterr().out.split()
    index = json.loads((out / "neuron-explainer-datasets.json").read_text())
    assert sorted(d["name"] for d in index["datasets"]) == sorted(printed[0::2])
    for d in index["datasets"]:
        n = {"attention_head": 4, "attention_autoencoder_latent": 256}[d["kind"]]
        assert len(list((out / d["records_path"] / "1").glob("*.json"))) == n
        meta = json.loads((out / d["records_path"] / "metadata.json").read_text())
        assert (meta["layers"], meta["seq_len"], meta["top_k"]) == ([1], 16, 3)
