"""``LoadedModel``: a booted TransformerBridge plus what the live side needs next to it.

Only the inference engine's worker thread may run the bridge or touch its hooks (hooks are global
state on the modules). Everything else here — shape, tokenizer calls, weight-derived norms computed at
load — is read-only and safe from any thread.

A *view* (``bridge=None``, built by ``models.facts.model_view``) is that read-only part alone, for a
process whose model runs elsewhere (the Ray backend's server): it tokenizes, checks bounds and hooks,
and holds the norms live fields read, but never runs a forward.
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
from neuron_explainer.storage.cache import ByteLRU

_RECENT_TEXT_CHARS = 4096
_RECENT_TEXTS_CHARS = 256 * _RECENT_TEXT_CHARS


@dataclass
class LoadedModel:
    name: str
    shape: ModelShape
    tokenizer: Any
    """A HF GPT-2 tokenizer; use ``to_tokens`` (never adds a BOS token)."""
    bridge: Any
    """``transformer_lens.model_bridge.TransformerBridge`` with raw HF weights (no LN folding); ``None``
    in a view of a model running in another process."""
    device: str
    autoencoders: dict[NodeKind, LoadedAutoencoder] = field(default_factory=dict)
    checkpoint: str = ""
    """Where the weights came from (a folder); for logs and ``modelInfo``."""
    neuron_write_norms: list[torch.Tensor] = field(default_factory=list)
    """Per layer [d_mlp]: ‖W_out[n]‖, what one unit of neuron n adds to the residual stream."""
    w_o_grams: list[torch.Tensor] = field(default_factory=list)
    """Per layer [head, d_head, d_head], on the CPU: ``W_O[h] · W_O[h]ᵀ`` (see ``write_norms``)."""
    vocab_size: int = 0
    """Read from the bridge's config when 0."""
    view_hooks: frozenset[str] = frozenset()
    """A view's hook names (the running model's); a loaded model reads its own from the bridge."""
    _tokenizer_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._hook_points: dict[str, HookPoint] = {}
        if self.bridge is None:
            if not self.neuron_write_norms or not self.w_o_grams or not self.vocab_size:
                raise ValueError("a model view needs its write norms, W_O Gram matrices and vocabulary size")
        else:
            with torch.no_grad():
                if not self.neuron_write_norms:
                    self.neuron_write_norms = [b.mlp.W_out.detach().norm(dim=-1).cpu() for b in self.bridge.blocks]
                if not self.w_o_grams:
                    self.w_o_grams = [head_grams(block.attn.W_O).cpu() for block in self.bridge.blocks]
            self.vocab_size = self.vocab_size or int(self.bridge.cfg.d_vocab)
            # The bridge's ``hook_dict`` is rebuilt (aliases and all) on every access: read it once.
            self._hook_points = dict(self.bridge.hook_dict)
            for ae in self.autoencoders.values():
                self._hook_points.update(ae.hook_points)
        self._hook_names = frozenset(self._hook_points) | self.view_hooks
        self._backend = getattr(self.tokenizer, "backend_tokenizer", None)
        self._token_strings: dict[int, str] = {}
        self._recent_tokens: ByteLRU[str, tuple[int, ...]] = ByteLRU(_RECENT_TEXTS_CHARS)
        self._mean_unembedding: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def mean_unembedding(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(``W_U`` averaged over the vocabulary [d_model], ``b_U``'s mean []), summed in float64, on the
        model's device: the mean logit is ``hidden · first + second``."""
        if self._mean_unembedding is None:
            with torch.no_grad():
                w_u = self.bridge.W_U.detach()
                b_u = getattr(self.bridge, "b_U", None)
                bias = b_u.detach().double().mean() if b_u is not None else torch.zeros((), dtype=torch.float64)
                self._mean_unembedding = (
                    w_u.double().mean(dim=1).to(w_u.dtype),
                    bias.to(device=w_u.device, dtype=w_u.dtype),
                )
        return self._mean_unembedding

    @property
    def is_view(self) -> bool:
        """True for a view of a model running elsewhere (no bridge: no forward here)."""
        return self.bridge is None

    @property
    def hook_names(self) -> frozenset[str]:
        """Every hook a request may capture: the bridge's and each inserted autoencoder's latents."""
        return self._hook_names

    def has_hook(self, name: str) -> bool:
        return name in self._hook_names

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
        """GPT-2 BPE ids with no BOS token (as the original server tokenized with tiktoken).

        Recent texts (up to 4 KB each) are remembered: a researcher clicking through one prompt, and its
        one-token target strings, is tokenized once."""
        with self._tokenizer_lock:  # fast tokenizers are not safe to share between threads
            found = self._recent_tokens.get(text)
            if found is not None:
                return list(found)
            if self._backend is not None:  # the Rust tokenizer itself: a tenth of the wrapper's cost
                ids = list(self._backend.encode(text, add_special_tokens=False).ids)
            else:
                ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(text) <= _RECENT_TEXT_CHARS:
                self._recent_tokens.put(text, tuple(ids), len(text))
            return ids

    def to_str_tokens(self, tokens: list[int]) -> list[str]:
        """Each token decoded on its own (so a multi-byte character split across tokens shows as U+FFFD)."""
        missing = [t for t in tokens if t not in self._token_strings]
        if missing:
            with self._tokenizer_lock:
                for t in missing:
                    self._token_strings[t] = self.tokenizer.decode([t])
        return [self._token_strings[t] for t in tokens]
