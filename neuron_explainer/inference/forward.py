"""One batched forward (and, when asked, backward) pass over several requests. Worker thread only.

Prompts are right-padded to the longest; GPT-2 attention is causal and positions start at 0 for every
row, so a row's values on its own tokens do not depend on the padding after it (equal to an
unbatched run within float rounding, ~1e-6). Hooks are attached for this pass only and always
removed, even when the forward raises. Order on a hook point: ablations, then captures, then the
autoencoder insertion — so captures see ablated values and autoencoders read ablated neurons.
Autoencoders are inserted only at layers where some request reads, ablates or differentiates their
latents (elsewhere the model output would be unchanged anyway). Logits are computed only at the
positions asked (each row's last token, and its traced token when tracing; the final LayerNorm's
output is captured there and unembedded by hand) unless a request asks for the prompt's ``lm_loss``:
the unembedding over every position dominates a small model's forward. A batch that needs no logits
at all stops after the last layer it reads, so one early neuron costs a fraction of a forward.

With gradients, one backward runs from the sum of every row's target scalar (rows are independent, so
each row's gradients are its own target's): a loss (final LayerNorm scale detached per the target) or
a traced node recomputed from the residual it reads (``inference/trace.py``).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from neuron_explainer.inference import trace as tracing
from neuron_explainer.inference.direct_effects import projections
from neuron_explainer.inference.early_stop import run_until_stopped, stop_hook
from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult
from neuron_explainer.inference.targets import AttentionPath, Target
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.nodes import NodeKind

HookFn = Callable[..., Any]
_LEVELS = itertools.count(1_000_000)


def target_reads(model: LoadedModel, target: Target) -> list[str]:
    """Residual hooks a target's scalar is computed from (kept on the gradient path); the first is the
    one its direct effects are taken at."""
    final = hook_names.resid_post(model.shape.n_layers - 1)
    if target.trace is None:
        return [final]
    reads = [hook_names.node_input(target.trace.node)]
    if target.trace.path is AttentionPath.V:
        down = target.trace.downstream
        reads.append(hook_names.node_input(down.node) if down is not None else final)
    return reads


@dataclass
class _Plan:
    """What one batch captures, ablates and differentiates; built once before the forward."""

    requests: Sequence[ForwardRequest]
    tokens: torch.Tensor  # [batch, pos] on the model's device
    lengths: list[int]
    needs_grad: bool
    captured: list[str]
    grad_names: list[str]
    ablations: dict[str, list[tuple[int, int, Ablation]]]
    full_logits: bool
    """Unembed every position (some request wants ``lm_loss``)."""
    stop_at: str | None
    """The hook after which the forward stops (``None`` with ``full_logits``)."""
    detach_rows: list[int]
    """Rows whose loss is differentiated with the final LayerNorm's scale detached."""
    positions: torch.Tensor  # [batch, 2]: each row's last token and where its logits are read
    store: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def wants_logits(self) -> bool:
        return self.full_logits or self.stop_at == hook_names.final_norm()


def _last_read(touched: set[str]) -> str:
    """Where a pass that needs no logits may stop: the residual stream after the last layer it reads,
    ablates or inserts an autoencoder at (hooks outside the blocks: the final LayerNorm)."""
    layers = [hook_names.layer_of(name) for name in touched]
    if any(layer is None for layer in layers):
        return hook_names.final_norm()
    return hook_names.resid_post(max((layer for layer in layers if layer is not None), default=0))


def _plan(model: LoadedModel, requests: Sequence[ForwardRequest]) -> _Plan:
    lengths = [len(r.tokens) for r in requests]
    pad = model.tokenizer.eos_token_id or 0
    tokens = torch.full((len(requests), max(lengths)), pad, dtype=torch.long)
    for row, r in enumerate(requests):
        tokens[row, : len(r.tokens)] = torch.tensor(r.tokens, dtype=torch.long)
    needs_grad = any(r.needs_grad for r in requests)
    ablations: dict[str, list[tuple[int, int, Ablation]]] = defaultdict(list)
    for row, r in enumerate(requests):
        for ab in r.ablations:
            ablations[hook_names.value_hook(ab.node)].append((row, lengths[row], ab))
    captured: set[str] = set()
    grad_names: set[str] = set()
    detach_rows = []
    for row, r in enumerate(requests):
        captured |= r.captures | r.grad_captures
        grad_names |= r.grad_captures
        captured |= _head_layers_v(r.directs)
        if r.needs_grad and r.target is not None:
            reads = target_reads(model, r.target)
            captured |= set(reads)
            if r.directs:
                grad_names.add(reads[0])
            if r.target.detach_layer_norm_scale and r.target.needs_loss_logits:
                detach_rows.append(row)
    full_logits = any(r.lm_loss for r in requests)
    want_logits = any(r.needs_logits for r in requests)
    touched = set(ablations) | captured
    stop_at = None if full_logits else (hook_names.final_norm() if want_logits else _last_read(touched))
    positions = torch.tensor(
        [
            [n - 1, r.target.logit_position if r.target is not None and r.target.logit_position is not None else n - 1]
            for r, n in zip(requests, lengths, strict=True)
        ]
    )
    return _Plan(
        requests,
        tokens.to(model.device),
        lengths,
        needs_grad,
        sorted(captured),
        sorted(grad_names),
        dict(ablations),
        full_logits,
        stop_at,
        detach_rows,
        positions.to(model.device),
    )


def _head_layers_v(directs: frozenset[str]) -> set[str]:
    """The ``attn_v`` hooks of the layers whose heads' direct effects are asked (their values write)."""
    return {
        hook_names.attn_v(layer)
        for hook in directs
        if (layer := hook_names.layer_of(hook)) is not None and hook == hook_names.attn_pattern(layer)
    }


# ---- hooks ------------------------------------------------------------------------------------
@contextmanager
def _attached(model: LoadedModel, hooks: Sequence[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach forward hooks for one pass; remove exactly these on exit, whatever happens."""
    level = next(_LEVELS)
    points = []
    try:
        for name, fn in hooks:
            point = model.hook_point(name)
            point.add_hook(fn, level=level)
            points.append(point)
        yield
    finally:
        for point in points:
            point.remove_hooks("fwd", level=level)


def _ablation_hook(entries: list[tuple[int, int, Ablation]]) -> HookFn:
    """entries: (row, row length, ablation); writes the constant (or patched values) into a copy."""

    def ablate(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        for row, length, ab in entries:
            pos = list(ab.positions) if ab.positions else list(range(length))
            head = ab.node.kind is NodeKind.ATTENTION_HEAD
            if ab.patch is None:
                if head:
                    x[row, ab.node.index, pos, :] = ab.value  # [batch, head, query, key]
                else:
                    x[row, pos, ab.node.index] = ab.value  # [batch, pos, units]
                continue
            patch = torch.tensor(ab.patch, dtype=x.dtype, device=x.device)
            if head:
                x[row, ab.node.index, pos, :length] = patch.view(len(pos), length)
            else:
                x[row, pos, ab.node.index] = patch
        return x

    return ablate


def _capture_hook(name: str, store: dict[str, torch.Tensor], keep_graph: bool) -> HookFn:
    def capture(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
        store[name] = x
        return x if keep_graph else None  # returning x keeps this very tensor on the gradient path

    return capture


def _detach_rows_hook(rows: list[int]) -> HookFn:
    """TDB's backward ablation of ``resid.ln_f.scale``: the scale's value stays, its gradient is cut."""

    def detach(scale: torch.Tensor, hook: Any) -> torch.Tensor:  # [batch, pos, 1]
        out = scale.clone()
        out[rows] = scale[rows].detach()
        return out

    return detach


def _hooks(model: LoadedModel, plan: _Plan, final: dict[str, torch.Tensor]) -> list[tuple[str, HookFn]]:
    hooks: list[tuple[str, HookFn]] = [(name, _ablation_hook(e)) for name, e in plan.ablations.items()]
    hooks += [(name, _capture_hook(name, plan.store, plan.needs_grad)) for name in plan.captured]
    touched = set(plan.ablations) | set(plan.captured)
    for ae in model.autoencoders.values():
        layers = {hook_names.layer_of(n) for n in touched if n in ae.hook_points}
        hooks += ae.insertion_hooks({layer for layer in layers if layer is not None})
    if plan.needs_grad and plan.detach_rows and plan.wants_logits:
        hooks.append((hook_names.final_norm_scale(), _detach_rows_hook(plan.detach_rows)))

    def keep(x: torch.Tensor) -> None:
        final["x"] = x if plan.needs_grad else x.detach()

    if plan.stop_at is not None:  # last on its hook point: every capture there runs first
        hooks.append((plan.stop_at, stop_hook(keep)))
    elif plan.full_logits:  # the final LayerNorm's output still feeds LOGIT_MINUS_MEAN (see trace.loss_value)
        hooks.append((hook_names.final_norm(), lambda x, hook: keep(x)))
    return hooks


# ---- the pass ---------------------------------------------------------------------------------
def _forward(model: LoadedModel, plan: _Plan, final: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run the model; logits ``[batch, 2, vocab]`` at ``plan.positions`` (``[batch, 2, 0]`` when none needed).
    ``final["hidden"]`` ``[batch, 2, d_model]`` is the final LayerNorm's output at those positions."""
    rows = torch.arange(len(plan.requests), device=plan.tokens.device)[:, None]
    if plan.full_logits:
        logits = model.bridge(plan.tokens)  # [batch, pos, vocab]
        final["all_logits"] = logits
        final["hidden"] = final["x"][rows, plan.positions]
        return logits[rows, plan.positions]
    assert plan.stop_at is not None
    run_until_stopped(lambda: model.bridge(plan.tokens), plan.stop_at)
    if not plan.wants_logits:
        return torch.empty(len(plan.requests), 2, 0, device=plan.tokens.device)
    final["hidden"] = final["x"][rows, plan.positions]
    return model.bridge.unembed(final["hidden"])  # only these positions: the full unembedding dominates small models


def _target_scalars(
    model: LoadedModel, plan: _Plan, logits: torch.Tensor, final: dict[str, torch.Tensor]
) -> tuple[list[torch.Tensor | None], list[torch.Tensor | None]]:
    """Per row: its loss value (when its target has a loss and logits exist) and its traced scalar
    (gradient mode only; a V trace also takes a small local gradient of what it acts on)."""
    losses: list[torch.Tensor | None] = [None] * len(plan.requests)
    traced: list[torch.Tensor | None] = [None] * len(plan.requests)
    for row, r in enumerate(plan.requests):
        target, n = r.target, plan.lengths[row]
        if target is None:
            continue
        if target.loss is not None and logits.shape[-1]:
            losses[row] = tracing.loss_value(model, target.loss, logits[row, 0], final["hidden"][row, 0])
        if target.trace is None or not (plan.needs_grad and r.needs_grad):
            continue
        reads = [plan.store[h] for h in target_reads(model, target)]
        trace, detach = target.trace, target.detach_layer_norm_scale
        if trace.path is not AttentionPath.V:
            traced[row] = tracing.pre_activation(model, trace, reads[0][row, :n], detach)
            continue
        inner: torch.Tensor | None = losses[row]
        if trace.downstream is not None:
            inner = tracing.pre_activation(model, trace.downstream, reads[1][row, :n], detach)
        assert inner is not None, "validated: a V trace without a downstream node has a loss"
        (grad,) = torch.autograd.grad(inner, reads[1], retain_graph=True)
        traced[row] = tracing.value_direct_effect(model, trace, reads[0][row, :n], grad[row, :n], detach)
    return losses, traced


def _backward(
    plan: _Plan, losses: list[torch.Tensor | None], traced: list[torch.Tensor | None]
) -> dict[str, torch.Tensor]:
    """One backward from the sum of the rows' target scalars; gradients of every ``grad_names`` hook."""
    if not plan.grad_names:
        return {}
    scalars = [t if t is not None else loss for t, loss in zip(traced, losses, strict=True)]
    total = torch.stack([s for s in scalars if s is not None]).sum()
    inputs = [plan.store[n] for n in plan.grad_names]
    if not total.requires_grad:  # nothing upstream of the target varies (e.g. a ZERO loss on a frozen graph)
        return {n: torch.zeros_like(t) for n, t in zip(plan.grad_names, inputs, strict=True)}
    found = torch.autograd.grad(total, inputs, allow_unused=True)
    return {
        n: (g if g is not None else torch.zeros_like(t)) for n, g, t in zip(plan.grad_names, found, inputs, strict=True)
    }


def _direct_effects(model: LoadedModel, plan: _Plan, grads: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    out: list[dict[str, torch.Tensor]] = []
    with torch.no_grad():
        for row, r in enumerate(plan.requests):
            if not r.directs or r.target is None:
                out.append({})
                continue
            n = plan.lengths[row]
            read = target_reads(model, r.target)[0]
            values = {h: plan.store[h][row, :n].detach() for h in _head_layers_v(r.directs)}
            out.append(projections(model, r.directs, grads[read][row, :n].detach(), read, values))
    return out


def _row(value: torch.Tensor, hook: str, row: int, length: int) -> torch.Tensor:
    out = value[row]
    for dim in hook_names.position_dims(hook):
        out = out.narrow(dim, 0, length)
    return out.detach().cpu().clone()


def _lm_losses(logits: torch.Tensor, tokens: torch.Tensor, lengths: list[int]) -> list[float | None]:
    """Per row, mean next-token cross-entropy over its own tokens (padding excluded)."""
    if logits.shape[1] < 2:
        return [None] * len(lengths)
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none")
    ce = ce.view(len(lengths), -1)  # [batch, pos - 1]
    return [float(ce[row, : n - 1].mean().item()) if n > 1 else None for row, n in enumerate(lengths)]


def _results(
    model: LoadedModel,
    plan: _Plan,
    logits: torch.Tensor,
    scalars: tuple[list[torch.Tensor | None], list[torch.Tensor | None]],
    grads: dict[str, torch.Tensor],
    directs: list[dict[str, torch.Tensor]],
    lm_losses: list[float | None],
) -> list[ForwardResult]:
    losses, traced = scalars
    shown = logits[:, 1].detach().cpu()  # [batch, vocab]
    results = []
    for row, r in enumerate(plan.requests):
        n = plan.lengths[row]
        loss, value = losses[row], traced[row]
        target_grad = None
        if r.directs and r.target is not None:
            target_grad = grads[target_reads(model, r.target)[0]][row, :n].detach().cpu().clone()
        results.append(
            ForwardResult(
                tokens=r.tokens,
                activations={h: _row(plan.store[h], h, row, n) for h in r.captures | r.grad_captures},
                grads={h: _row(grads[h], h, row, n) for h in r.grad_captures},
                last_logits=shown[row].clone(),
                lm_loss=lm_losses[row] if r.lm_loss else None,
                loss=float(loss.item()) if loss is not None else None,
                traced=float(value.item()) if value is not None else None,
                target_grad=target_grad,
                directs={h: t.cpu() for h, t in directs[row].items()},
            )
        )
    return results


def run_batch(model: LoadedModel, requests: Sequence[ForwardRequest]) -> list[ForwardResult]:
    """Run ``requests`` (already validated) as one padded batch; one result per request, in order."""
    plan = _plan(model, requests)
    final: dict[str, torch.Tensor] = {}
    grad_mode: Any = torch.enable_grad() if plan.needs_grad else torch.inference_mode()
    with grad_mode, _attached(model, _hooks(model, plan, final)):
        logits = _forward(model, plan, final)
        scalars = _target_scalars(model, plan, logits, final)
        grads = _backward(plan, *scalars)
        directs = _direct_effects(model, plan, grads)
        lm_losses: list[float | None] = [None] * len(requests)
        if plan.full_logits:
            lm_losses = _lm_losses(final["all_logits"].detach(), plan.tokens, plan.lengths)
    return _results(model, plan, logits, scalars, grads, directs, lm_losses)
