"""``ModelFacts``: what a process needs of a model that runs in another process, as plain data.

The Ray backend's server never loads the model: at start it asks one replica for these facts and builds
a *view* (``model_view``), a ``LoadedModel`` without a bridge. The view tokenizes (the replica's own
tokenizer files, rebuilt here), checks node bounds and hook names, and holds the weight-derived norms
live fields read (neuron write norms, ``W_O`` Gram matrices, autoencoder latent write norms): a few
MB for GPT-2 small, against ~500 MB of weights. Everything here is strings, numbers, bytes and CPU
tensors; nothing that pickles a module.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from neuron_explainer.models.autoencoder_insertion import LoadedAutoencoder
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.shapes import ModelShape
from neuron_explainer.nodes import NodeKind


@dataclass(frozen=True)
class AutoencoderFacts:
    name: str
    kind: NodeKind
    location: str
    write_norms: list[torch.Tensor]
    """Per layer [n_latents], as ``LoadedAutoencoder.write_norms``."""


@dataclass(frozen=True)
class ModelFacts:
    name: str
    shape: ModelShape
    vocab_size: int
    device: str
    """Where the model runs (the replica's device), for ``modelInfo`` and logs."""
    checkpoint: str
    tokenizer_files: dict[str, bytes]
    """The tokenizer as ``save_pretrained`` writes it, file name -> content."""
    neuron_write_norms: list[torch.Tensor]
    w_o_grams: list[torch.Tensor]
    autoencoders: list[AutoencoderFacts]
    hook_names: frozenset[str]


def model_facts(model: LoadedModel) -> ModelFacts:
    """The facts of a loaded model (on the process that runs it)."""
    with tempfile.TemporaryDirectory(prefix="ne-tokenizer-") as folder:
        model.tokenizer.save_pretrained(folder)
        files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    return ModelFacts(
        name=model.name,
        shape=model.shape,
        vocab_size=model.vocab_size,
        device=str(model.device),
        checkpoint=model.checkpoint,
        tokenizer_files=files,
        neuron_write_norms=[t.detach().cpu() for t in model.neuron_write_norms],
        w_o_grams=[t.detach().cpu() for t in model.w_o_grams],
        autoencoders=[
            AutoencoderFacts(ae.name, kind, ae.location, [t.detach().cpu() for t in ae.write_norms])
            for kind, ae in model.autoencoders.items()
        ],
        hook_names=model.hook_names,
    )


def model_view(facts: ModelFacts) -> LoadedModel:
    """A ``LoadedModel`` without a bridge: everything but the forward (see the module docstring)."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="ne-tokenizer-") as folder:
        for name, data in facts.tokenizer_files.items():
            (Path(folder) / name).write_bytes(data)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    autoencoders = {
        ae.kind: LoadedAutoencoder(ae.name, ae.kind, ae.location, [], list(ae.write_norms)) for ae in facts.autoencoders
    }
    return LoadedModel(
        facts.name,
        facts.shape,
        tokenizer,
        None,
        facts.device,
        autoencoders,
        facts.checkpoint,
        list(facts.neuron_write_norms),
        list(facts.w_o_grams),
        vocab_size=facts.vocab_size,
        view_hooks=facts.hook_names,
    )
