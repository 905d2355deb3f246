"""What a caller asks of one forward pass, and what it gets back.

A ``ForwardRequest`` is hashable: the GraphQL layer's ``ForwardLoader`` keys on it, and the engine
runs identical requests that arrive together as one batch row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from neuron_explainer.nodes import NodeId


@dataclass(frozen=True, slots=True)
class Ablation:
    """Set ``node``'s value to ``value`` at token positions ``positions`` (all positions when empty).

    For a head the value is written into its attention pattern at those *query* positions, for every
    key (TDB's ``attn.qk_probs[token, All, head]``); for neurons and latents into the activation.
    """

    node: NodeId
    positions: tuple[int, ...] = ()
    value: float = 0.0


@dataclass(frozen=True, slots=True)
class LossConfig:
    """TDB's ``logit_diff`` at the last position: mean(target logits) − mean(distractor logits)
    (just mean target logits when there are no distractors). Token ids, each one GPT-2 token."""

    target_tokens: tuple[int, ...]
    distractor_tokens: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    tokens: tuple[int, ...]
    captures: frozenset[str] = frozenset()
    """Hook names (from ``models.hook_names``) whose values come back in ``ForwardResult.activations``."""
    grad_captures: frozenset[str] = frozenset()
    """Hook names whose gradient of the loss comes back in ``ForwardResult.grads``; needs ``loss``."""
    ablations: tuple[Ablation, ...] = ()
    loss: LossConfig | None = None
    lm_loss: bool = False
    """Also compute the prompt's mean next-token cross-entropy (a log-softmax over every position)."""
    logits: bool = True
    """Whether ``last_logits`` is wanted. When no request of a batch wants logits, a loss or gradients,
    the pass stops right after the last layer anything reads or ablates (a node's activations on an
    early layer cost a fraction of a full forward)."""

    @property
    def needs_grad(self) -> bool:
        return bool(self.grad_captures)

    @property
    def needs_logits(self) -> bool:
        return self.logits or self.lm_loss or self.loss is not None

    def same_pass(self, other: ForwardRequest) -> bool:
        """True when both describe the same forward (tokens, ablations, loss) and may be merged."""
        return (self.tokens, self.ablations, self.loss) == (other.tokens, other.ablations, other.loss)

    def merged(self, other: ForwardRequest) -> ForwardRequest:
        """One request capturing what either asks for; both must be ``same_pass``."""
        if not self.same_pass(other):
            raise ValueError("only requests for the same tokens, ablations and loss can be merged")
        return ForwardRequest(
            self.tokens,
            self.captures | other.captures,
            self.grad_captures | other.grad_captures,
            self.ablations,
            self.loss,
            self.lm_loss or other.lm_loss,
            self.logits or other.logits,
        )


@dataclass(slots=True)
class ForwardResult:
    """One request's outputs, every tensor on the CPU and cut to the request's own tokens (no padding).

    ``activations[hook]`` drops the batch dim: ``[pos, ...]`` (``attn_pattern``: [head, query, key]).
    """

    tokens: tuple[int, ...]
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    last_logits: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # [vocab], at the last token
    """Empty when the request set ``logits=False`` and nothing else in its batch needed them."""
    lm_loss: float | None = None
    """Mean next-token cross-entropy over the prompt (``None`` unless asked for, or for a single token)."""
    loss: float | None = None
    """The ``LossConfig`` value, when one was given."""
