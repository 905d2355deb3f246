"""What a backward pass differentiates: one of the original's losses, or a node traced from inside.

Definitions are TDB's (reference §3.2-3.3; ``derived_scalar_computation.py``, ``reconstituted.py`` and
``direct_effects.py`` in its source):

- ``LOGIT_DIFF``: at the last position, mean(target logits) − mean(distractor logits); just the mean
  target logit without distractors.
- ``LOGIT_MINUS_MEAN``: mean target logits − mean of all logits at the last position (no distractors).
- ``PROBS``: the sum of the targets' softmax probabilities at the last position (no distractors).
- ``ZERO``: ``0 · Σ logits``: a backward pass whose every gradient is zero (TDB pairs it with backward
  ablations; here it is mostly a way to ask for the forward-only columns of a node table).
- A traced node: its **pre-activation** at ``token``, recomputed from the residual stream it reads with
  that layer's LayerNorm scale detached (TDB's ``TraceConfig(pre_or_post_act=PRE,
  detach_layer_norm_scale=True)``): an MLP neuron's ``ln_2(resid_mid) · W_in + b_in``; a latent's encoder
  pre-activation of its input location recomputed from the residual; a head's attention logit of the
  (``token``, ``key_token``) pair ``q · k / sqrt(d_head)``, where path ``Q`` detaches the key, ``K`` the
  query, ``QK`` neither.
- Path ``V``: the head's direct effect on a downstream node (``downstream``) or, without one, on the
  loss: ``A[q, k] · (v[k] · W_O) · g[q]`` with the attention probability ``A`` (and so Q and K) detached,
  the LayerNorm scale detached and ``g`` the (detached) gradient of the downstream pre-activation (or the
  loss) at the residual stream it reads. The backward pass runs from that scalar, so gradients reach
  the prompt only through the head's values.

With ``detach_layer_norm_scale`` (TDB's constant ``DETACH_LAYER_NORM_SCALE = True``, our default) a loss
is also differentiated with the final LayerNorm's scale detached, as TDB's node table always does (a
backward ablation of ``resid.ln_f.scale``). Plain values, hashable and picklable: they travel in
``ForwardRequest``s between processes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from neuron_explainer.nodes import NodeId


class LossKind(enum.Enum):
    LOGIT_DIFF = "logit_diff"
    """Mean target logits minus mean distractor logits at the last position (TDB's default)."""
    LOGIT_MINUS_MEAN = "logit_minus_mean"
    """Mean target logits minus the mean of all logits at the last position."""
    PROBS = "probs"
    """Sum of the target tokens' probabilities at the last position."""
    ZERO = "zero"
    """Zero times the logits: every gradient is zero."""


class AttentionPath(enum.Enum):
    Q = "Q"
    """Through the query only (the key side is detached)."""
    K = "K"
    """Through the key only (the query side is detached)."""
    QK = "QK"
    """Through query and key (the attention logit as it is)."""
    V = "V"
    """Through the value only: the head's direct effect on a downstream node or the loss."""


@dataclass(frozen=True, slots=True)
class LossConfig:
    """A loss at the last position; token ids, each one token of the model's vocabulary."""

    target_tokens: tuple[int, ...]
    distractor_tokens: tuple[int, ...] = ()
    kind: LossKind = LossKind.LOGIT_DIFF


@dataclass(frozen=True, slots=True)
class NodeTrace:
    """An internal node to trace from: ``node`` at ``token`` (heads: the (``token``, ``key_token``) pair)."""

    node: NodeId
    token: int
    key_token: int | None = None
    """Heads only: the key token of the pair, at most ``token``."""
    path: AttentionPath | None = None
    """Heads only (``None`` means ``QK``)."""
    downstream: NodeTrace | None = None
    """Path ``V`` only: the node whose pre-activation the head's direct effect is taken on (not itself ``V``)."""


@dataclass(frozen=True, slots=True)
class Target:
    """What one pass's backward differentiates: ``trace`` when set, else ``loss``.

    A ``V`` trace without ``downstream`` needs ``loss`` (the direct effect is on the loss)."""

    loss: LossConfig | None = None
    trace: NodeTrace | None = None
    detach_layer_norm_scale: bool = True

    @property
    def logit_position(self) -> int | None:
        """Where the debugger reads logits: the traced token, or ``None`` for the last one (TDB's
        ``topOutputTokenLogits`` at the traced token)."""
        return self.trace.token if self.trace is not None else None

    @property
    def needs_loss_logits(self) -> bool:
        """Whether the target's scalar depends on the logits (a loss, or a ``V`` trace onto the loss)."""
        if self.trace is None:
            return self.loss is not None
        return self.trace.path is AttentionPath.V and self.trace.downstream is None
