"""Corpus reading: the three input forms, windows, the corpus hash, and inputs rejected with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuron_explainer.collation.corpus import Corpus, check_corpus_path
from neuron_explainer.errors import BadInput
from neuron_explainer.models.tokenizer import gpt2_tokenizer

_TOKENIZER = gpt2_tokenizer()


def encode(text: str) -> list[int]:
    return list(_TOKENIZER(text, add_special_tokens=False)["input_ids"])


EOT = 50256


def test_plain_text_is_one_document_cut_into_windows(tmp_path: Path) -> None:
    text = "The cat sat on the mat.\nThe dog barked at the moon.\n" * 10
    (tmp_path / "a.txt").write_text(text)
    corpus = Corpus.read(tmp_path / "a.txt", encode, seq_len=8)
    ids = encode(text)
    assert corpus.n_windows == len(ids) // 8
    np.testing.assert_array_equal(corpus.windows(0, corpus.n_windows).ravel(), ids[: corpus.n_tokens])
    np.testing.assert_array_equal(corpus.take([2, 0]), [ids[16:24], ids[0:8]])
    assert EOT not in corpus.windows(0, corpus.n_windows)  # no BOS, no separator inside one document


def test_folder_and_jsonl_join_documents_with_endoftext(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "b.txt").write_text("Second file here.")
    (tmp_path / "docs" / "sub" / "a.txt").write_text("Nested file text.")
    (tmp_path / "docs" / "a.txt").write_text("First file text.")
    (tmp_path / "docs" / "skip.md").write_text("not read")
    folder = Corpus.read(tmp_path / "docs", encode, seq_len=2)
    expected = encode("First file text.") + [EOT] + encode("Second file here.") + [EOT]
    expected += encode("Nested file text.")
    assert folder.windows(0, folder.n_windows).ravel().tolist() == expected[: folder.n_tokens]

    lines = [
        {"body": "First file text."},
        {"body": "Second file here.", "id": 2},
        {"body": "Nested file text."},
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    jsonl = Corpus.read(tmp_path / "c.jsonl", encode, seq_len=2, text_field="body")
    assert jsonl.windows(0, jsonl.n_windows).tolist() == folder.windows(0, folder.n_windows).tolist()


def test_hash_is_stable_and_covers_bytes_and_seq_len(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some words to hash, and some more words after them. " * 5)
    h1 = Corpus.read(tmp_path / "a.txt", encode, seq_len=4).hash
    assert Corpus.read(tmp_path / "a.txt", encode, seq_len=4).hash == h1
    assert Corpus.read(tmp_path / "a.txt", encode, seq_len=5).hash != h1
    (tmp_path / "a.txt").write_text("Some words to hash, and some more words after them! " * 5)
    assert Corpus.read(tmp_path / "a.txt", encode, seq_len=4).hash != h1


def test_long_text_is_tokenized_in_pieces_without_changing_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    import neuron_explainer.collation.corpus as corpus_module

    text = "Line one.\n\nLine two, indented:\n    x = 1\nEnd.\n" * 40
    monkeypatch.setattr(corpus_module, "_CHUNK_CHARS", 37)
    assert corpus_module._encode_long(text, encode) == encode(text)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "does not exist"),
        ("empty.txt", "", "fewer than one window"),
        ("short.txt", "two words", "fewer than one window"),
        ("bad.txt", b"\xff\xfe not utf-8", "not UTF-8"),
        ("bad.jsonl", '{"text": "ok"}\nnot json\n', "bad.jsonl:2: not JSON"),
        ("field.jsonl", '{"content": "no text field"}\n', "no string field 'text'"),
        ("emptydir", "dir", "holds no .txt files"),
    ],
)
def test_unusable_corpora_are_rejected_with_a_reason(
    tmp_path: Path, name: str, content: str | bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(BadInput, match=message) as info:
        Corpus.read(path, encode, seq_len=16)
    assert info.value.fields["argument"] in ("corpus", "text_field")


def test_check_corpus_path_needs_no_tokenizer(tmp_path: Path) -> None:
    (tmp_path / "blank.txt").write_text("  \n\n ")
    with pytest.raises(BadInput, match="holds no text"):
        check_corpus_path(tmp_path / "blank.txt")
    (tmp_path / "ok.txt").write_text("Some text.")
    check_corpus_path(tmp_path / "ok.txt")
