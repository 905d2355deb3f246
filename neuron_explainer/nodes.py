"""Node ids: which component of which model we are talking about.

A node is ``(model, kind, layer, index)`` plus the autoencoder name for latents. Its readable
string form is the GraphQL ``ID``: ``gpt2-small/mlp_neuron/5/131``, ``gpt2-small/attention_head/5/1``,
``gpt2-small/ae-resid-delta-mlp-v4/5/1234`` (the autoencoder name stands in the kind's place).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from neuron_explainer.errors import BadInput


class NodeKind(enum.Enum):
    MLP_NEURON = "mlp_neuron"
    """One unit of ``blocks.{L}.mlp.hook_post``; per-token records."""
    ATTENTION_HEAD = "attention_head"
    """One head of one layer; records are per token pair (``attn_write_norm``)."""
    MLP_AUTOENCODER_LATENT = "mlp_autoencoder_latent"
    """A latent of an autoencoder reading an MLP location; per-token records."""
    ATTENTION_AUTOENCODER_LATENT = "attention_autoencoder_latent"
    """A latent of an autoencoder reading the attention output; per-token records."""

    @property
    def is_latent(self) -> bool:
        return self in (NodeKind.MLP_AUTOENCODER_LATENT, NodeKind.ATTENTION_AUTOENCODER_LATENT)

    @property
    def is_token_pair(self) -> bool:
        """True when records hold one value per (query, key) token pair rather than per token."""
        return self is NodeKind.ATTENTION_HEAD


_SEGMENT = re.compile(r"^[A-Za-z0-9_.\-]+$")
_NUMBER = re.compile(r"[0-9]{1,9}")
"""ASCII digits only: ``str.isdigit`` accepts superscripts (which ``int`` refuses) and ``int`` reads
full-width and other scripts' digits as numbers (``"３"`` would be node 3)."""


@dataclass(frozen=True, slots=True)
class NodeId:
    model: str
    kind: NodeKind
    layer: int
    index: int
    autoencoder: str | None = None
    """Set exactly when ``kind`` is a latent kind."""

    def __post_init__(self) -> None:
        if self.kind.is_latent != (self.autoencoder is not None):
            raise BadInput(f"node kind {self.kind.value} and autoencoder {self.autoencoder!r} disagree")

    def __str__(self) -> str:
        middle = self.autoencoder if self.autoencoder is not None else self.kind.value
        return f"{self.model}/{middle}/{self.layer}/{self.index}"

    @classmethod
    def parse(cls, text: str, autoencoder_kinds: Mapping[str, NodeKind] | None = None) -> NodeId:
        """Parse ``model/kind/layer/index``; ``autoencoder_kinds`` maps known autoencoder names to their kind.

        Raises ``BadInput`` naming what is wrong; never returns a half-valid id.
        """
        parts = text.split("/")
        if len(parts) != 4:
            raise BadInput(
                f"node id {text!r} must look like 'model/kind/layer/index', e.g. 'gpt2-small/mlp_neuron/5/131'",
                argument="id",
            )
        model, middle, layer_text, index_text = parts
        if not _SEGMENT.fullmatch(model) or not _SEGMENT.fullmatch(middle):
            raise BadInput(f"node id {text!r} has an invalid model or kind segment", argument="id")
        if not (_NUMBER.fullmatch(layer_text) and _NUMBER.fullmatch(index_text)) or len(layer_text) > 6:
            raise BadInput(f"node id {text!r}: layer and index must be non-negative integers", argument="id")
        layer, index = int(layer_text), int(index_text)
        try:
            kind = NodeKind(middle)
        except ValueError:
            kind = None
        if kind is not None and not kind.is_latent:
            return cls(model, kind, layer, index)
        ae_kind = (autoencoder_kinds or {}).get(middle)
        if ae_kind is None:
            known = ", ".join(["mlp_neuron", "attention_head", *sorted(autoencoder_kinds or {})])
            raise BadInput(f"node id {text!r}: unknown kind {middle!r} (known: {known})", argument="id")
        return cls(model, ae_kind, layer, index, autoencoder=middle)
