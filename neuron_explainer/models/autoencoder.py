"""Sparse autoencoders in Transformer Debugger's state-dict format (reference §4).

One ``torch.save``d dict per layer: ``pre_bias`` [d], ``encoder.weight`` [n, d], ``latent_bias`` [n],
``decoder.weight`` [d, n], buffers ``stats_last_nonzero`` [n] (int64), ``latents_activation_frequency``
[n], ``latents_mean_square`` [n], optional ``activation`` (``"ReLU"`` default, ``"Identity"``,
``"TopK"``) and ``activation_state_dict`` (TopK: ``{"k": int, "postact_fn": "ReLU"}``).

encode(x) = act((x - pre_bias) @ encoder.weightᵀ + latent_bias); decode(z) = z @ decoder.weightᵀ + pre_bias.

Dead latents (frequency < 1e-8) are dropped as the original server did with ``omit_dead_latents``:
the *minimum* dead count across a model's layers is removed from the *end* of every layer, so latent
indices stay the ones the released datasets use (this assumes dead latents sit at the tail).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from neuron_explainer.errors import CorruptBlob
from neuron_explainer.models.home import atomic_file

DEAD_FREQUENCY = 1e-8
_ACTIVATIONS = ("ReLU", "Identity", "TopK")


@dataclass(frozen=True)
class Autoencoder:
    """One layer's autoencoder; tensors live on one device and are never trained here."""

    pre_bias: torch.Tensor  # [d]
    encoder_weight: torch.Tensor  # [n, d]
    latent_bias: torch.Tensor  # [n]
    decoder_weight: torch.Tensor  # [d, n]
    activation_frequency: torch.Tensor  # [n]
    activation: str = "ReLU"
    topk_k: int | None = None
    topk_postact: str = "ReLU"

    @property
    def n_latents(self) -> int:
        return int(self.encoder_weight.shape[0])

    @property
    def d_input(self) -> int:
        return int(self.encoder_weight.shape[1])

    def n_dead(self) -> int:
        return int((self.activation_frequency < DEAD_FREQUENCY).sum().item())

    def pre_activation(self, x: torch.Tensor, latent: int | None = None) -> torch.Tensor:  # [..., d] -> [..., n]
        """``(x - pre_bias) @ encoder.weightᵀ + latent_bias`` (TDB's ``encode_pre_act``); with ``latent``
        only that one column ``[...]``."""
        if latent is None:
            return (x - self.pre_bias) @ self.encoder_weight.T + self.latent_bias
        return (x - self.pre_bias) @ self.encoder_weight[latent] + self.latent_bias[latent]

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [..., d] -> [..., n]
        pre = self.pre_activation(x)
        if self.activation == "ReLU":
            return torch.relu(pre)
        if self.activation == "Identity":
            return pre
        assert self.topk_k is not None
        top = torch.topk(pre, k=min(self.topk_k, self.n_latents), dim=-1)
        values = torch.relu(top.values) if self.topk_postact == "ReLU" else top.values
        return torch.zeros_like(pre).scatter(-1, top.indices, values)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:  # [..., n] -> [..., d]
        return latents @ self.decoder_weight.T + self.pre_bias

    def keep_first(self, n: int) -> Autoencoder:
        """The same autoencoder with only latents ``0..n-1`` (indices preserved)."""
        return replace(
            self,
            encoder_weight=self.encoder_weight[:n].contiguous(),
            latent_bias=self.latent_bias[:n].contiguous(),
            decoder_weight=self.decoder_weight[:, :n].contiguous(),
            activation_frequency=self.activation_frequency[:n].contiguous(),
        )

    def to(self, device: str | torch.device) -> Autoencoder:
        return replace(
            self,
            pre_bias=self.pre_bias.to(device),
            encoder_weight=self.encoder_weight.to(device),
            latent_bias=self.latent_bias.to(device),
            decoder_weight=self.decoder_weight.to(device),
            activation_frequency=self.activation_frequency.to(device),
        )


def _fail(source: str, what: str) -> CorruptBlob:
    return CorruptBlob(f"autoencoder file {source}: {what}", blob=source)


def _tensor(state: dict[str, Any], key: str, shape: tuple[int, ...], source: str) -> torch.Tensor:
    value = state.get(key)
    if not isinstance(value, torch.Tensor):
        raise _fail(source, f"missing tensor {key!r} (keys: {sorted(state)})")
    if tuple(value.shape) != shape:
        raise _fail(source, f"{key!r} has shape {tuple(value.shape)}, expected {shape}")
    return value.detach().to(torch.float32)


def parse_tdb_autoencoder(data: bytes, source: str) -> Autoencoder:
    """Parse one TDB state-dict file; ``CorruptBlob`` names ``source`` and the bad key or shape."""
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for bad pickles
        raise _fail(source, f"not a torch state dict ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise _fail(source, f"expected a state dict, got {type(state).__name__}")
    enc = state.get("encoder.weight")
    if not isinstance(enc, torch.Tensor) or enc.ndim != 2:
        raise _fail(source, f"'encoder.weight' must be a [n_latents, d] tensor (keys: {sorted(state)})")
    n, d = (int(s) for s in enc.shape)
    activation = state.get("activation", "ReLU")
    if activation not in _ACTIVATIONS:
        raise _fail(source, f"unknown activation {activation!r} (known: {', '.join(_ACTIVATIONS)})")
    topk_k, postact = None, "ReLU"
    if activation == "TopK":
        act_state = state.get("activation_state_dict")
        if not isinstance(act_state, dict) or not isinstance(act_state.get("k"), int):
            raise _fail(source, "TopK activation needs activation_state_dict with an int 'k'")
        topk_k, postact = act_state["k"], str(act_state.get("postact_fn", "ReLU"))
        if postact not in ("ReLU", "Identity"):
            raise _fail(source, f"unknown TopK postact_fn {postact!r}")
    frequency = _tensor(state, "latents_activation_frequency", (n,), source)
    return Autoencoder(
        pre_bias=_tensor(state, "pre_bias", (d,), source),
        encoder_weight=_tensor(state, "encoder.weight", (n, d), source),
        latent_bias=_tensor(state, "latent_bias", (n,), source),
        decoder_weight=_tensor(state, "decoder.weight", (d, n), source),
        activation_frequency=frequency,
        activation=activation,
        topk_k=topk_k,
        topk_postact=postact,
    )


def load_tdb_autoencoder(path: Path) -> Autoencoder:
    return parse_tdb_autoencoder(path.read_bytes(), str(path))


def omit_dead_latents(layers: Sequence[Autoencoder], source: str) -> list[Autoencoder]:
    """Drop the minimum-across-layers dead count from the end of every layer (TDB, preserve_indices)."""
    for i, ae in enumerate(layers):
        if not bool((ae.activation_frequency > 0).any()):
            raise _fail(f"{source} layer {i}", "every latent has zero activation frequency")
    if not layers:
        return []
    n_drop = min(ae.n_dead() for ae in layers)
    return [ae.keep_first(ae.n_latents - n_drop) if n_drop else ae for ae in layers]


def tdb_state_dict(ae: Autoencoder) -> dict[str, Any]:
    """The TDB file contents for ``ae`` (CPU tensors; buffers the original keeps are filled in)."""
    n = ae.n_latents
    state: dict[str, Any] = {
        "pre_bias": ae.pre_bias.cpu(),
        "encoder.weight": ae.encoder_weight.cpu(),
        "latent_bias": ae.latent_bias.cpu(),
        "decoder.weight": ae.decoder_weight.cpu(),
        "stats_last_nonzero": torch.zeros(n, dtype=torch.int64),
        "latents_activation_frequency": ae.activation_frequency.cpu(),
        "latents_mean_square": torch.zeros(n),
        "activation": ae.activation,
    }
    if ae.activation == "TopK":
        state["activation_state_dict"] = {"k": ae.topk_k, "postact_fn": ae.topk_postact}
    return state


def save_tdb_autoencoder(path: Path, ae: Autoencoder) -> Path:
    """Write ``ae`` as a TDB-format ``.pt`` file (atomically)."""
    buffer = io.BytesIO()
    torch.save(tdb_state_dict(ae), buffer)
    return atomic_file(path, buffer.getvalue())
