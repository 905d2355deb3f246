"""Node groups: every node of one kind in one layer, what hooks they need, and their per-sequence values.

A group's values for a batch are ``[batch, width, n_nodes]`` float32 — node-minor for per-token nodes (the
layout the hooks have), a transposed view of ``[batch, n_nodes, width]`` for heads — where ``width`` is:

- ``seq_len`` for MLP neurons (``blocks.{L}.mlp.hook_post``) and autoencoder latents (the autoencoder's
  encoder applied offline to its input hook — the same numbers as the live inserted autoencoder, whose
  insertion leaves the model's output unchanged);
- ``seq_len * (seq_len + 1) / 2`` for attention heads: ``attn_write_norm`` = ``A[q, k] · ‖v[k] · W_O‖``
  (no bias, TDB reference §3.4) for every lower-triangle pair, flattened row-major — query 0's key 0,
  then query 1's keys 0..1, ... — which is TDB's token-pair layout (reference §2.4) for a full window.

One forward per batch captures every group's hooks and stops after the last layer any group needs
(the unembedding, most of a small model's cost, is never run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from neuron_explainer.collation.workers import run_all
from neuron_explainer.errors import BadInput
from neuron_explainer.inference.early_stop import run_until_stopped, stop_hook
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.write_norms import value_write_norms
from neuron_explainer.nodes import NodeKind

Cache = dict[str, torch.Tensor]


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One requested kind: a model kind, or a latent kind with its autoencoder's name."""

    kind: NodeKind
    autoencoder: str | None = None

    @property
    def segment(self) -> str:
        """The kind's segment in node ids and dataset paths (``mlp_neuron``, ``ae-tiny-mlp``, ...)."""
        return self.autoencoder if self.autoencoder is not None else self.kind.value

    @property
    def activation(self) -> str:
        """What the records' activations are, in TDB's derived-scalar names."""
        if self.kind is NodeKind.MLP_NEURON:
            return "mlp_post_act"
        if self.kind is NodeKind.ATTENTION_HEAD:
            return "attn_write_norm"
        return f"{self.kind.value} ({self.autoencoder})"


def parse_kinds(text: str | Sequence[str], model: LoadedModel) -> list[KindSpec]:
    """``mlp_neuron``, ``attention_head`` or a loaded autoencoder's name; ``BadInput`` lists the choices."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    loaded = {ae.name: kind for kind, ae in model.autoencoders.items()}
    choices = ["mlp_neuron", "attention_head", *loaded]
    if not names:
        raise BadInput(f"no node kinds given (choose from {', '.join(choices)})", argument="kinds")
    out: list[KindSpec] = []
    for name in names:
        if name in (NodeKind.MLP_NEURON.value, NodeKind.ATTENTION_HEAD.value):
            spec = KindSpec(NodeKind(name))
        elif name in loaded:
            spec = KindSpec(loaded[name], name)
        else:
            raise BadInput(
                f"unknown node kind {name!r} for {model.name} (choose from {', '.join(choices)}; "
                "an autoencoder must be loaded with --mlp_autoencoder_name / --attn_autoencoder_name)",
                argument="kinds",
                kind=name,
            )
        if spec not in out:
            out.append(spec)
    return out


def check_layers(layers: Sequence[int], model: LoadedModel) -> list[int]:
    n = model.shape.n_layers
    bad = [layer for layer in layers if not 0 <= layer < n]
    if bad:
        raise BadInput(
            f"layer {bad[0]} out of range: {model.name} has {n} layers (0..{n - 1})",
            argument="layers",
            bound=n,
        )
    if not layers:
        raise BadInput("no layers given", argument="layers")
    return sorted(set(layers))


@dataclass(frozen=True)
class NodeGroup:
    """Every node of one kind in one layer: plain data (it pickles to wherever the model runs)."""

    spec: KindSpec
    layer: int
    n_nodes: int
    width: int
    hooks: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.spec.segment}/{self.layer}"

    def extract(self, model: LoadedModel, cache: Cache) -> torch.Tensor:
        """Captured hooks → ``[batch, width, n_nodes]`` on the model's device."""
        if self.spec.kind is NodeKind.MLP_NEURON:
            return cache[self.hooks[0]]
        if self.spec.kind is NodeKind.ATTENTION_HEAD:
            pattern, v = self.hooks
            gram = model.w_o_grams[self.layer].to(model.device)  # [head, d_head, d_head]
            seq_len = cache[pattern].shape[-1]
            query, key = torch.tril_indices(seq_len, seq_len, device=model.device)  # [pairs] each
            return attn_write_norm_pairs(cache[pattern], cache[v], gram, query * seq_len + key, key)
        ae = model.autoencoder_for(self.spec.kind)
        assert ae is not None and ae.name == self.spec.autoencoder  # checked when the group was planned
        return ae.layers[self.layer].encode(cache[self.hooks[0]])


def plan_groups(model: LoadedModel, kinds: Sequence[KindSpec], layers: Sequence[int], seq_len: int) -> list[NodeGroup]:
    groups = []
    for spec in kinds:
        for layer in layers:
            groups.append(_group(model, spec, layer, seq_len))
    return groups


def _group(model: LoadedModel, spec: KindSpec, layer: int, seq_len: int) -> NodeGroup:
    if spec.kind is NodeKind.MLP_NEURON:
        return NodeGroup(spec, layer, model.shape.d_mlp, seq_len, (hook_names.mlp_post(layer),))
    if spec.kind is NodeKind.ATTENTION_HEAD:
        hooks = (hook_names.attn_pattern(layer), hook_names.attn_v(layer))
        return NodeGroup(spec, layer, model.shape.n_heads, seq_len * (seq_len + 1) // 2, hooks)
    ae = model.autoencoder_for(spec.kind)
    if ae is None or ae.name != spec.autoencoder:
        raise BadInput(
            f"autoencoder {spec.autoencoder!r} is not loaded on {model.name}",
            argument="kinds",
            kind=spec.segment,
        )
    return NodeGroup(spec, layer, ae.n_latents, seq_len, (hook_names.ae_input(ae.location, layer),))


def attn_write_norm_pairs(
    pattern: torch.Tensor,  # [batch, head, query, key]
    v: torch.Tensor,  # [batch, key, head, d_head]
    gram: torch.Tensor,  # [head, d_head, d_head]: W_O[h] · W_O[h]ᵀ (see models/write_norms.py)
    flat: torch.Tensor,  # [pairs] query * seq_len + key, lower triangle in row-major order
    key: torch.Tensor,  # [pairs]
) -> torch.Tensor:  # [batch, pairs, head]
    """``A[q, k] · ‖v[k] · W_O‖`` for each lower-triangle pair (TDB ``attn_write_norm``, flattened)."""
    batch, heads = pattern.shape[0], pattern.shape[1]
    value_norms = value_write_norms(v, gram).transpose(1, 2)  # [batch, head, key]
    a = pattern.float().reshape(batch, heads, -1).index_select(2, flat)  # [batch, head, pairs]
    # A transposed view, not a copy: the accumulators take heads' rows as they lie (see _node_major).
    return (a * value_norms.index_select(2, key)).transpose(1, 2)


def capture(model: LoadedModel, tokens: torch.Tensor, hooks: Sequence[str]) -> Cache:
    """Run ``tokens`` ``[batch, seq]`` through the bridge, keeping ``hooks``; stops after the last
    layer they need. Must run on the thread that owns the model."""
    cache: Cache = {}

    def keeper(name: str) -> Callable[..., None]:
        def keep(value: torch.Tensor, hook: object) -> None:
            cache[name] = value.detach()  # keyed by our name: the bridge may report an alias

        return keep

    last = hook_names.resid_post(max(hook_names.layer_of(h) or 0 for h in hooks))
    fwd: list[tuple[str, Callable[..., None]]] = [(h, keeper(h)) for h in hooks]
    fwd.append((last, stop_hook()))
    with torch.inference_mode():
        run_until_stopped(lambda: model.bridge.run_with_hooks(tokens.to(model.device), fwd_hooks=fwd), last)
    missing = [h for h in hooks if h not in cache]
    if missing:
        raise RuntimeError(f"hooks {missing} did not fire on {model.name}")
    return cache


def batch_values(
    model: LoadedModel, groups: Sequence[NodeGroup], hooks: Sequence[str], windows: np.ndarray
) -> dict[str, torch.Tensor]:
    """One forward over ``windows`` ``[batch, seq]`` and every group's values ``[batch, width, n]`` float32 on
    the CPU, by group name. A pure function of the model: what the builder sends to a model in another
    process (groups, hooks and windows pickle as plain data)."""
    cache = capture(model, torch.from_numpy(windows), hooks)

    def extract(g: NodeGroup) -> Callable[[], torch.Tensor]:
        return lambda: g.extract(model, cache).float().cpu()

    return dict(zip([g.name for g in groups], run_all([extract(g) for g in groups]), strict=True))
