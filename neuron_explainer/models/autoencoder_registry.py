"""Which autoencoders exist for which model, where their TDB-format files live, and loading a set.

The five original GPT-2-small autoencoders are read from
``{root}/sparse-autoencoder/gpt2-small/{location}{_v4}/autoencoders/{layer}.pt`` where ``root`` is
``$NEURON_EXPLAINER_AUTOENCODER_ROOT`` (a local folder or an ``https://`` base, for offline or
mirrored use) or by default ``https://openaipublic.blob.core.windows.net/``; downloads are cached
under ``$NEURON_EXPLAINER_HOME/autoencoders/`` with the same relative layout. ``tiny-gpt2``'s two
autoencoders are generated from a fixed seed into that cache on first use and then read back through
the very same loader.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch

from neuron_explainer.errors import BadInput, CorruptBlob, NotFound, UpstreamUnavailable
from neuron_explainer.models.autoencoder import (
    Autoencoder,
    load_tdb_autoencoder,
    omit_dead_latents,
    save_tdb_autoencoder,
)
from neuron_explainer.models.home import atomic_dir, atomic_file, neuron_explainer_home
from neuron_explainer.nodes import NodeKind

ROOT_ENV = "NEURON_EXPLAINER_AUTOENCODER_ROOT"
DEFAULT_ROOT = "https://openaipublic.blob.core.windows.net/"
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class AutoencoderSpec:
    name: str
    model: str
    location: str
    """TDB input location: ``mlp_post_act``, ``resid_delta_mlp`` or ``resid_delta_attn``."""
    folder: str
    """Path of the per-layer files relative to the root, without the ``/{layer}.pt``."""
    generated_latents: int | None = None
    """For the toy autoencoders: how many latents the fixed-seed generator makes."""

    @property
    def kind(self) -> NodeKind:
        if self.location == "resid_delta_attn":
            return NodeKind.ATTENTION_AUTOENCODER_LATENT
        return NodeKind.MLP_AUTOENCODER_LATENT

    def relpath(self, layer: int) -> str:
        return f"{self.folder}/{layer}.pt"


def _original(name: str, location: str, suffix: str) -> AutoencoderSpec:
    return AutoencoderSpec(
        name, "gpt2-small", location, f"sparse-autoencoder/gpt2-small/{location}{suffix}/autoencoders"
    )


_SPECS: dict[str, list[AutoencoderSpec]] = {
    "gpt2-small": [
        _original("ae-mlp-post-act-v1", "mlp_post_act", ""),
        _original("ae-resid-delta-mlp-v1", "resid_delta_mlp", ""),
        _original("ae-mlp-post-act-v4", "mlp_post_act", "_v4"),
        _original("ae-resid-delta-mlp-v4", "resid_delta_mlp", "_v4"),
        _original("ae-resid-delta-attn-v4", "resid_delta_attn", "_v4"),
    ],
    "tiny-gpt2": [
        AutoencoderSpec(
            "ae-tiny-mlp",
            "tiny-gpt2",
            "mlp_post_act",
            "sparse-autoencoder/tiny-gpt2/mlp_post_act/autoencoders",
            512,
        ),
        AutoencoderSpec(
            "ae-tiny-attn",
            "tiny-gpt2",
            "resid_delta_attn",
            "sparse-autoencoder/tiny-gpt2/resid_delta_attn/autoencoders",
            256,
        ),
    ],
}


def autoencoder_specs(model: str) -> list[AutoencoderSpec]:
    return list(_SPECS.get(model, []))


def find_spec(model: str, name: str) -> AutoencoderSpec:
    for spec in _SPECS.get(model, []):
        if spec.name == name:
            return spec
    known = ", ".join(s.name for s in _SPECS.get(model, [])) or "none"
    raise BadInput(f"no autoencoder {name!r} for model {model!r} (known: {known})", autoencoder=name, model=model)


def _fetch(spec: AutoencoderSpec, layer: int, cache: Path) -> Path:
    """A local path holding the layer's file: cache, a local root, or a download into the cache."""
    rel = spec.relpath(layer)
    cached = cache / rel
    if cached.is_file():
        return cached
    root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    if not root.startswith(("http://", "https://")):
        local = Path(root.removeprefix("file://")) / rel
        if not local.is_file():
            raise NotFound(f"autoencoder file {local} does not exist (from ${ROOT_ENV})", tried=[str(local)])
        return local
    url = root.rstrip("/") + "/" + rel
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            data = response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise UpstreamUnavailable(
            f"could not download autoencoder {spec.name} layer {layer} from {url} ({exc}); without network, "
            f"put the files under a folder with the same layout and set ${ROOT_ENV} to it, "
            f"or copy them to {cached}",
            url=url,
        ) from exc
    return atomic_file(cached, data)


def _generate_toy(spec: AutoencoderSpec, n_layers: int, d_input: int, folder: Path) -> None:
    assert spec.generated_latents is not None
    n = spec.generated_latents
    gen = torch.Generator().manual_seed(hash_seed(spec.name))
    for layer in range(n_layers):
        encoder = torch.randn(n, d_input, generator=gen) / d_input**0.5  # [n, d]
        decoder = encoder.T / encoder.norm(dim=1)  # [d, n], unit-norm columns along the read direction
        ae = Autoencoder(
            pre_bias=0.001 * torch.randn(d_input, generator=gen),
            encoder_weight=encoder,
            latent_bias=-0.002 * torch.rand(n, generator=gen),  # the toy's activations are small
            decoder_weight=decoder.contiguous(),
            activation_frequency=0.01 + 0.2 * torch.rand(n, generator=gen),
        )
        save_tdb_autoencoder(folder / f"{layer}.pt", ae)


def hash_seed(name: str) -> int:
    """A stable seed from a name (``hash()`` is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) + 1234


def load_autoencoder_layers(
    spec: AutoencoderSpec, n_layers: int, d_input: int, *, home: Path | None = None
) -> list[Autoencoder]:
    """All layers of ``spec`` on CPU, dead latents omitted (minimum across layers), width checked."""
    cache = (home or neuron_explainer_home()) / "autoencoders"
    if spec.generated_latents is not None:
        atomic_dir(cache / spec.folder, lambda tmp: _generate_toy(spec, n_layers, d_input, tmp))
    layers = []
    for layer in range(n_layers):
        path = _fetch(spec, layer, cache)
        ae = load_tdb_autoencoder(path)
        if ae.d_input != d_input:
            raise CorruptBlob(
                f"autoencoder file {path} reads width {ae.d_input}, but {spec.location} of {spec.model} has {d_input}",
                blob=str(path),
            )
        layers.append(ae)
    return omit_dead_latents(layers, spec.name)
