"""``tiny-gpt2``: the embedded default model, built from a fixed seed and saved like any checkpoint.

A 2-layer GPT-2 (d_model 64, 4 heads, d_mlp 256, n_ctx 128, the real 50257-token GPT-2 vocabulary).
It is written once as a HuggingFace checkpoint folder (weights + the packaged GPT-2 tokenizer) under
``$NEURON_EXPLAINER_HOME/models/tiny-gpt2`` and then booted by exactly the code path that loads
``gpt2-small`` from a folder, so tests on it exercise the real loader. Its weights are random
(GPT-2's init, seed ``TOY_SEED``) and identical on every machine with the pinned torch/transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from neuron_explainer.models.home import atomic_dir, neuron_explainer_home
from neuron_explainer.models.tokenizer import gpt2_tokenizer

TOY_NAME = "tiny-gpt2"
TOY_SEED = 20240601
_MARKER = "neuron-explainer-toy.json"


def toy_config() -> GPT2Config:
    # GPT2Config must be given n_ctx explicitly (env recipe); n_inner is d_mlp.
    return GPT2Config(n_layer=2, n_embd=64, n_head=4, n_inner=256, n_positions=128, n_ctx=128, vocab_size=50257)  # type: ignore[call-arg]  # n_ctx goes through **kwargs


def build_toy_model() -> GPT2LMHeadModel:
    """The fixed-seed model; the global RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TOY_SEED)
        model = GPT2LMHeadModel(toy_config())
    return model.eval()


def _write_toy(folder: Path) -> None:
    build_toy_model().save_pretrained(str(folder))
    gpt2_tokenizer().save_pretrained(str(folder))
    (folder / _MARKER).write_text(json.dumps(_marker_content()))


def ensure_toy_checkpoint(home: Path | None = None) -> Path:
    """The checkpoint folder of ``tiny-gpt2``, written atomically on first use (safe across processes)."""
    target = (home or neuron_explainer_home()) / "models" / TOY_NAME
    if target.is_dir():
        marker = target / _MARKER
        if not marker.is_file() or json.loads(marker.read_text()) != _marker_content():
            raise RuntimeError(f"{target} is not this version's {TOY_NAME} checkpoint; remove the folder to rebuild it")
        return target
    return atomic_dir(target, _write_toy)


def _marker_content() -> dict[str, object]:
    return {"name": TOY_NAME, "seed": TOY_SEED}
