"""``LoadedModel``: a booted TransformerBridge plus what the live side needs next to it.

Only the inference engine's worker thread may run the bridge or touch its hooks (hooks are global
state on the modules). Everything else here — shape, tokenizer calls, weight-derived norms computed at
load — is read-only and safe from any thread.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from transformer_lens.hook_points import HookPoint

from neuron_explainer.models.autoencoder_insertion import LoadedAutoencoder
from neuron_explainer.models.shapes import ModelShape
from neuron_explainer.models.write_norms import head_grams
from neuron_explainer.nodes import NodeKind


@dataclass
class LoadedModel:
    name: str
    shape: ModelShape
    tokenizer: Any
    """A HF GPT-2 tokenizer; use ``to_tokens`` (never adds a BOS token)."""
    bridge: Any
    """``transformer_lens.model_bridge.TransformerBridge`` with raw HF weights (no LN folding)."""
    device: str
    autoencoders: dict[NodeKind, LoadedAutoencoder] = field(default_factory=dict)
    checkpoint: str = ""
    """Where the weights came from (a folder); for logs and ``modelInfo``."""
    neuron_write_norms: list[torch.Tensor] = field(default_factory=list)
    """Per layer [d_mlp]: ‖W_out[n]‖, what one unit of neuron n adds to the residual stream."""
    w_o_grams: list[torch.Tensor] = field(default_factory=list)
    """Per layer [head, d_head, d_head], on the CPU: ``W_O[h] · W_O[h]ᵀ`` (see ``write_norms``)."""
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        with torch.no_grad():
            if not self.neuron_write_norms:
                self.neuron_write_norms = [block.mlp.W_out.detach().norm(dim=-1).cpu() for block in self.bridge.blocks]
            if not self.w_o_grams:
                self.w_o_grams = [head_grams(block.attn.W_O).cpu() for block in self.bridge.blocks]
        # The bridge's ``hook_dict`` is rebuilt (aliases and all) on every access: read it once.
        self._hook_points: dict[str, HookPoint] = dict(self.bridge.hook_dict)
        for ae in self.autoencoders.values():
            self._hook_points.update(ae.hook_points)
        self._backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._token_strings: dict[int, str] = {}

    @property
    def vocab_size(self) -> int:
        return int(self.bridge.cfg.d_vocab)

    @property
    def mlp_autoencoder(self) -> LoadedAutoencoder | None:
        return self.autoencoders.get(NodeKind.MLP_AUTOENCODER_LATENT)

    @property
    def attn_autoencoder(self) -> LoadedAutoencoder | None:
        return self.autoencoders.get(NodeKind.ATTENTION_AUTOENCODER_LATENT)

    def autoencoder_for(self, kind: NodeKind) -> LoadedAutoencoder | None:
        return self.autoencoders.get(kind)

    def n_latents(self, kind: NodeKind) -> int | None:
        ae = self.autoencoders.get(kind)
        return ae.n_latents if ae is not None else None

    def hook_point(self, name: str) -> HookPoint:
        """The bridge's hook point of that name, or an inserted autoencoder's latent hook point."""
        point = self._hook_points.get(name)
        if point is None:
            raise KeyError(f"no hook point {name!r} on {self.name}")
        return point

    def to_tokens(self, text: str) -> list[int]:
        """GPT-2 BPE ids with no BOS token (as the original server tokenized with tiktoken)."""
        with self._tokenizer_lock:  # fast tokenizers are not safe to share between threads
            if self._backend is not None:  # the Rust tokenizer itself: a tenth of the wrapper's cost
                return list(self._backend.encode(text, add_special_tokens=False).ids)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def to_str_tokens(self, tokens: list[int]) -> list[str]:
        """Each token decoded on its own (so a multi-byte character split across tokens shows as U+FFFD)."""
        missing = [t for t in tokens if t not in self._token_strings]
        if missing:
            with self._tokenizer_lock:
                for t in missing:
                    self._token_strings[t] = self.tokenizer.decode([t])
        return [self._token_strings[t] for t in tokens]
