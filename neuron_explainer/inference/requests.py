"""What a caller asks of one forward pass, and what it gets back.

A ``ForwardRequest`` is hashable: the GraphQL layer's ``ForwardLoader`` keys on it, and the engine
runs identical requests that arrive together as one batch row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from neuron_explainer.inference.targets import LossConfig, Target
from neuron_explainer.nodes import NodeId

__all__ = ["Ablation", "ForwardRequest", "ForwardResult", "LossConfig", "Target"]


@dataclass(frozen=True, slots=True)
class Ablation:
    """Set ``node``'s value to ``value`` at token positions ``positions`` (all positions when empty).

    For a head the value is written into its attention pattern at those *query* positions, for every
    key (TDB's ``attn.qk_probs[token, All, head]``); for neurons and latents into the activation.
    With ``patch`` the values come from the same node on another prompt of the same length instead
    (activation patching): one value per position for neurons and latents, and for heads one row of
    attention probabilities per position (``len(positions) × n_tokens`` values, row-major).
    """

    node: NodeId
    positions: tuple[int, ...] = ()
    value: float = 0.0
    patch: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class ForwardRequest:
    tokens: tuple[int, ...]
    captures: frozenset[str] = frozenset()
    """Hook names (from ``models.hook_names``) whose values come back in ``ForwardResult.activations``."""
    grad_captures: frozenset[str] = frozenset()
    """Hook names whose gradient of the loss comes back in ``ForwardResult.grads``; needs ``loss``."""
    ablations: tuple[Ablation, ...] = ()
    target: Target | None = None
    """What gradients are of; ``last_logits`` are read at ``target.logit_position`` when it has one."""
    lm_loss: bool = False
    """Also compute the prompt's mean next-token cross-entropy (a log-softmax over every position)."""
    logits: bool = True
    """Whether ``last_logits`` is wanted. When no request of a batch wants logits, a loss or gradients,
    the pass stops right after the last layer anything reads or ablates (a node's activations on an
    early layer cost a fraction of a full forward)."""
    directs: frozenset[str] = frozenset()
    """Value hooks (``mlp_post``, ``attn_pattern``, ``ae_latents``) whose direct-effect projections come
    back in ``ForwardResult.directs``; needs gradients (``target``)."""

    @property
    def needs_grad(self) -> bool:
        return bool(self.grad_captures or self.directs)

    @property
    def needs_logits(self) -> bool:
        needs_target_logits = self.needs_grad and self.target is not None and self.target.needs_loss_logits
        return self.logits or self.lm_loss or needs_target_logits

    def same_pass(self, other: ForwardRequest) -> bool:
        """True when both describe the same forward (tokens, ablations, target) and may be merged."""
        return (self.tokens, self.ablations, self.target) == (other.tokens, other.ablations, other.target)

    def merged(self, other: ForwardRequest) -> ForwardRequest:
        """One request capturing what either asks for; both must be ``same_pass``."""
        if not self.same_pass(other):
            raise ValueError("only requests for the same tokens, ablations and target can be merged")
        return ForwardRequest(
            self.tokens,
            self.captures | other.captures,
            self.grad_captures | other.grad_captures,
            self.ablations,
            self.target,
            self.lm_loss or other.lm_loss,
            self.logits or other.logits,
            self.directs | other.directs,
        )

    def covers(self, wanted: ForwardRequest) -> bool:
        """True when this pass's result answers ``wanted`` too (same pass, at least as much captured)."""
        return (
            self.same_pass(wanted)
            and wanted.captures <= self.captures
            and wanted.grad_captures <= self.grad_captures
            and wanted.directs <= self.directs
            and (self.lm_loss or not wanted.lm_loss)
            and (self.needs_logits or not wanted.needs_logits)
        )


@dataclass(slots=True)
class ForwardResult:
    """One request's outputs, every tensor on the CPU and cut to the request's own tokens (no padding).

    ``activations[hook]`` drops the batch dim: ``[pos, ...]`` (``attn_pattern``: [head, query, key]).
    """

    tokens: tuple[int, ...]
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    last_logits: torch.Tensor = field(default_factory=lambda: torch.empty(0))  # [vocab]
    """At the last token (at the traced token when the target traces a node). Empty when the request
    set ``logits=False`` and nothing else in its batch needed them."""
    lm_loss: float | None = None
    """Mean next-token cross-entropy over the prompt (``None`` unless asked for, or for a single token)."""
    loss: float | None = None
    """The target's loss value, when it has one and its logits were computed."""
    traced: float | None = None
    """The traced node's scalar (pre-activation, or path V's direct effect), when the target traces one."""
    target_grad: torch.Tensor | None = None  # [pos, d_model]
    """The gradient of the target at the residual stream it reads (the final residual for a loss, the
    traced node's input for a node); set when ``directs`` were asked."""
    directs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Per asked value hook, shaped like its activation: what one unit of each node writes, dotted with
    ``target_grad`` (a head's pair: ``v[k] · W_O · g[q]``); zero for nodes that do not write before the
    residual the target reads. Times the activation, that is TDB's direct effect."""

    def nbytes(self) -> int:
        """Bytes held by this result's tensors (what a cache of results is bounded by)."""
        tensors = [*self.activations.values(), *self.grads.values(), *self.directs.values(), self.last_logits]
        if self.target_grad is not None:
            tensors.append(self.target_grad)
        return sum(t.element_size() * t.nelement() for t in tensors) + 64 * len(self.tokens)
