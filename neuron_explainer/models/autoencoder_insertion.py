"""Inserting an autoencoder into the model so its latents become live, ablatable nodes.

At the autoencoder's input hook (e.g. ``blocks.{L}.mlp.hook_post``) the value ``x`` is replaced by
``decode(latents') + (x - decode(latents))`` where ``latents = encode(x)`` and ``latents'`` is what the
per-layer hook point ``autoencoder.{mlp|attn}.{L}.hook_latents`` returns. Unablated, that equals ``x``
up to float rounding (the model output is unchanged, ~1e-6); an ablation of a latent changes
everything downstream; gradients reach the latents through ``decode(latents')``. As in the original
server the insertion runs after every other hook on the input location, so a neuron ablation at
``mlp.hook_post`` is seen by the MLP autoencoder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.hook_points import HookPoint

from neuron_explainer.models import hook_names
from neuron_explainer.models.autoencoder import Autoencoder
from neuron_explainer.nodes import NodeKind

HookFn = Callable[..., Any]


@dataclass
class LoadedAutoencoder:
    """One named autoencoder, all layers on the model's device, plus its per-layer latent hook points.

    In a model view (``models.facts``) ``layers`` is empty: names, shape and write norms only."""

    name: str
    kind: NodeKind
    location: str
    layers: list[Autoencoder]
    write_norms: list[torch.Tensor]
    """Per layer [n_latents]: ‖what one unit of the latent adds to the residual stream‖ (decoder row,
    projected through W_out for ``mlp_post_act`` autoencoders)."""
    hook_points: dict[str, HookPoint] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for layer in range(len(self.write_norms)):
            name = hook_names.ae_latents(self.kind, layer)
            point = HookPoint()
            point.name = name
            self.hook_points[name] = point

    @property
    def n_latents(self) -> int:
        return int(self.write_norms[0].shape[0])

    def insertion_hooks(self, layers: set[int] | None = None) -> list[tuple[str, HookFn]]:
        """(input hook name, hook fn) pairs that insert this autoencoder at ``layers`` (default all)."""
        chosen = range(len(self.layers)) if layers is None else sorted(layers)
        return [(hook_names.ae_input(self.location, layer), self._hook(layer)) for layer in chosen]

    def _hook(self, layer: int) -> HookFn:
        ae = self.layers[layer]
        point = self.hook_points[hook_names.ae_latents(self.kind, layer)]

        def insert(x: torch.Tensor, hook: Any) -> torch.Tensor:  # [batch, pos, d_input]
            latents = ae.encode(x)  # [batch, pos, n_latents]
            # With gradients on, the hook point must see its own tensor: were it the very one in the
            # error term, its two uses would cancel and every latent gradient would read zero.
            patched = point(latents.clone() if torch.is_grad_enabled() else latents)
            return ae.decode(patched) + (x - ae.decode(latents))

        return insert
