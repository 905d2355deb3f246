"""The corpus a dataset is collated over: text in, fixed-length token windows out.

Three inputs are read: a plain-text file (one document), a folder of ``.txt`` files (one document per
file, taken in sorted relative-path order, recursively) and JSONL (one document per line, the text in
``text_field``). Documents are tokenized with the model's GPT-2 tokenizer **without a BOS token** (as the
original server did), joined with one ``<|endoftext|>`` between documents (as GPT-2 saw its training
data), and cut into consecutive windows of ``seq_len`` tokens; a final partial window is dropped. Window
``i`` is therefore a pure function of the input bytes, the tokenizer and ``seq_len``: the builder plans
its batches by window number, and a resumed run takes the same windows as the run it continues.

The whole token stream is held in memory as int32 (4 bytes per token: 100M tokens = 400 MB).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from neuron_explainer.errors import BadInput

Encode = Callable[[str], Sequence[int]]
"""Text to token ids, without BOS (e.g. ``LoadedModel.to_tokens``)."""

_CHUNK_CHARS = 1 << 20


class Corpus:
    """Token windows of one corpus; build with :meth:`read`."""

    def __init__(self, tokens: np.ndarray, seq_len: int, corpus_hash: str, description: str) -> None:
        self._tokens = tokens  # [n_windows * seq_len] int32
        self.seq_len = seq_len
        self.hash = corpus_hash
        """sha256 over the input bytes (with relative file names), the text field and ``seq_len``."""
        self.description = description
        """Where the text came from, for dataset metadata."""

    @property
    def n_windows(self) -> int:
        return len(self._tokens) // self.seq_len

    @property
    def n_tokens(self) -> int:
        return self.n_windows * self.seq_len

    def windows(self, start: int, stop: int) -> np.ndarray:
        """Windows ``[start, stop)`` as an int64 array ``[stop - start, seq_len]``."""
        if not 0 <= start <= stop <= self.n_windows:
            raise IndexError(f"windows [{start}, {stop}) outside [0, {self.n_windows})")
        flat = self._tokens[start * self.seq_len : stop * self.seq_len]
        return flat.reshape(stop - start, self.seq_len).astype(np.int64)

    def take(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Windows at arbitrary ``indices`` as int64 ``[len(indices), seq_len]``."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._tokens.reshape(self.n_windows, self.seq_len)[idx].astype(np.int64)

    @classmethod
    def read(
        cls,
        path: str | Path,
        encode: Encode,
        *,
        seq_len: int,
        text_field: str = "text",
        separator: int | None = 50256,
    ) -> Corpus:
        """Read and tokenize ``path``; raises ``BadInput`` (before any model work) when it is unusable."""
        if seq_len < 1:
            raise BadInput(f"seq_len must be at least 1, got {seq_len}", argument="seq_len")
        source = Path(path)
        hasher = hashlib.sha256()
        hasher.update(f"seq_len={seq_len}\n".encode())
        documents = _read_documents(source, text_field, hasher)
        pieces: list[np.ndarray] = []
        n_docs = 0
        for text in documents:
            if not text:
                continue
            if n_docs and separator is not None:
                pieces.append(np.array([separator], dtype=np.int32))
            pieces.append(np.asarray(_encode_long(text, encode), dtype=np.int32))
            n_docs += 1
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        if len(tokens) < seq_len:
            raise BadInput(
                f"corpus {str(source)!r} has {len(tokens)} tokens, fewer than one window of {seq_len}",
                argument="corpus",
                tokens=len(tokens),
                seq_len=seq_len,
            )
        n_windows = len(tokens) // seq_len
        return cls(tokens[: n_windows * seq_len], seq_len, hasher.hexdigest(), str(source))


def check_corpus_path(path: str | Path, text_field: str = "text") -> None:
    """``BadInput`` unless ``path`` can be read as a corpus with some text; no tokenizer needed.

    Lets a command line fail before it loads a model; ``Corpus.read`` checks again (and counts tokens).
    """
    docs = _read_documents(Path(path), text_field, hashlib.sha256())
    if not any(d.strip() for d in docs):
        raise BadInput(f"corpus {str(path)!r} holds no text", argument="corpus")


def _read_documents(source: Path, text_field: str, hasher: hashlib._Hash) -> list[str]:
    if not source.exists():
        raise BadInput(f"corpus {str(source)!r} does not exist", argument="corpus")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*.txt") if p.is_file())
        if not files:
            raise BadInput(f"corpus folder {str(source)!r} holds no .txt files", argument="corpus")
        docs = []
        for file in files:
            name = file.relative_to(source).as_posix()
            data = _read_bytes(file)
            hasher.update(f"file={name} bytes={len(data)}\n".encode())
            hasher.update(data)
            docs.append(_decode(data, file))
        return docs
    data = _read_bytes(source)
    if source.suffix in (".jsonl", ".ndjson"):
        hasher.update(f"jsonl text_field={text_field}\n".encode())
        hasher.update(data)
        return _jsonl_documents(_decode(data, source), source, text_field)
    hasher.update(b"text\n")
    hasher.update(data)
    return [_decode(data, source)]


def _read_bytes(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as e:
        raise BadInput(f"corpus file {str(file)!r} cannot be read: {e.strerror}", argument="corpus") from e


def _decode(data: bytes, file: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadInput(f"corpus file {str(file)!r} is not UTF-8 text (byte {e.start})", argument="corpus") from e


def _jsonl_documents(text: str, source: Path, text_field: str) -> list[str]:
    docs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise BadInput(f"{source}:{number}: not JSON ({e.msg})", argument="corpus", line=number) from e
        value = obj.get(text_field) if isinstance(obj, dict) else None
        if not isinstance(value, str):
            raise BadInput(
                f"{source}:{number}: no string field {text_field!r}",
                argument="text_field",
                line=number,
            )
        docs.append(value)
    return docs


def _encode_long(text: str, encode: Encode) -> list[int]:
    """Tokenize ``text`` in ~1 MB pieces split only where GPT-2's pre-tokenizer splits anyway.

    A cut is made right after a newline that sits between two non-space characters (``x\\ny``): the
    pre-tokenizer always ends a piece there, so the ids equal those of the text tokenized whole.
    """
    ids: list[int] = []
    start = 0
    while len(text) - start > _CHUNK_CHARS:
        cut = _safe_cut(text, start + _CHUNK_CHARS)
        if cut is None:
            break
        ids.extend(encode(text[start:cut]))
        start = cut
    ids.extend(encode(text[start:]))
    return ids


def _safe_cut(text: str, near: int) -> int | None:
    pos = near
    while True:
        pos = text.find("\n", pos)
        if pos < 0 or pos + 1 >= len(text):
            return None
        if pos > 0 and not text[pos - 1].isspace() and not text[pos + 1].isspace():
            return pos + 1
        pos += 1
