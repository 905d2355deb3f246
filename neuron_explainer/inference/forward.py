"""One batched forward (and, when asked, backward) pass over several requests. Worker thread only.

Prompts are right-padded to the longest; GPT-2 attention is causal and positions start at 0 for every
row, so a row's values on its own tokens do not depend on the padding after it (equal to an
unbatched run within float rounding, ~1e-6). Hooks are attached for this pass only and always
removed, even when the forward raises. Order on a hook point: ablations, then captures, then the
autoencoder insertion — so captures see ablated values and autoencoders read ablated neurons.
Autoencoders are inserted only at layers where some request reads, ablates or differentiates their
latents (elsewhere the model output would be unchanged anyway). Logits are computed only at each
row's last position (the final LayerNorm's output is captured there and unembedded by hand) unless a
request asks for the prompt's ``lm_loss``: the unembedding over every position dominates a small
model's forward. A batch that needs no logits at all stops after the last layer it reads (a hook
raises ``_StopForward``), so one early neuron costs a fraction of a forward.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from neuron_explainer.errors import BadInput
from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult
from neuron_explainer.models import hook_names
from neuron_explainer.models.loaded_model import LoadedModel
from neuron_explainer.models.shapes import check_bounds
from neuron_explainer.nodes import NodeKind

HookFn = Callable[..., Any]
_LEVELS = itertools.count(1_000_000)


def validate_request(model: LoadedModel, request: ForwardRequest) -> None:
    """``BadInput`` for anything about one request that would fail (or silently mislead) in a batch."""
    n = len(request.tokens)
    if n == 0:
        raise BadInput("the prompt is empty", argument="prompt")
    if n > model.shape.n_ctx:
        raise BadInput(
            f"the prompt has {n} tokens; {model.name} reads at most {model.shape.n_ctx}",
            argument="prompt",
            tokens=n,
            limit=model.shape.n_ctx,
        )
    if any(not 0 <= t < model.vocab_size for t in request.tokens):
        raise BadInput(f"token ids must be in [0, {model.vocab_size})", argument="tokens")
    if request.grad_captures and request.loss is None:
        raise BadInput("gradients were asked for without a loss (give target tokens)", argument="targetTokens")
    if request.loss is not None:
        if not request.loss.target_tokens:
            raise BadInput("a loss needs at least one target token", argument="targetTokens")
        for t in (*request.loss.target_tokens, *request.loss.distractor_tokens):
            if not 0 <= t < model.vocab_size:
                raise BadInput(f"loss token id {t} out of range", argument="targetTokens")
    for name in request.captures | request.grad_captures:
        try:
            model.hook_point(name)
        except KeyError:
            raise BadInput(f"no hook {name!r} on {model.name} (is the autoencoder loaded?)", hook=name) from None
    for ablation in request.ablations:
        validate_ablation(model, ablation, n)


def validate_ablation(model: LoadedModel, ablation: Ablation, n_tokens: int) -> None:
    node = ablation.node
    if node.kind.is_latent and model.autoencoder_for(node.kind) is None:
        raise BadInput(f"cannot ablate {node}: no {node.kind.value} autoencoder is loaded", node=str(node))
    ae = model.autoencoder_for(node.kind)
    if ae is not None and node.autoencoder != ae.name:
        raise BadInput(f"cannot ablate {node}: the loaded autoencoder is {ae.name}", node=str(node))
    check_bounds(node, model.shape, model.n_latents(node.kind))
    bad = [p for p in ablation.positions if not 0 <= p < n_tokens]
    if bad:
        raise BadInput(
            f"ablation of {node} at token {bad[0]}: the prompt has {n_tokens} tokens",
            node=str(node),
            token=bad[0],
        )


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
    """entries: (row, row length, ablation); writes the constant into a copy of the activation."""

    def ablate(x: torch.Tensor, hook: Any) -> torch.Tensor:
        x = x.clone()
        for row, length, ab in entries:
            pos: list[int] | slice = list(ab.positions) if ab.positions else slice(0, length)
            if ab.node.kind is NodeKind.ATTENTION_HEAD:
                x[row, ab.node.index, pos, :] = ab.value  # [batch, head, query, key]
            else:
                x[row, pos, ab.node.index] = ab.value  # [batch, pos, units]
        return x

    return ablate


def _capture_hook(name: str, store: dict[str, torch.Tensor], keep_graph: bool) -> HookFn:
    def capture(x: torch.Tensor, hook: Any) -> torch.Tensor | None:
        store[name] = x
        return x if keep_graph else None  # returning x keeps this very tensor on the gradient path

    return capture


class _StopForward(Exception):
    """Raised by the last hook a pass needs, so the layers after it (and the unembedding) never run."""


def _stop_hook(store: dict[str, torch.Tensor], keep_graph: bool) -> HookFn:
    def stop(x: torch.Tensor, hook: Any) -> None:
        store["x"] = x if keep_graph else x.detach()
        raise _StopForward

    return stop


def _last_read(touched: set[str]) -> str:
    """Where a pass that needs no logits may stop: the residual stream after the last layer it reads,
    ablates or inserts an autoencoder at (hooks outside the blocks: the final LayerNorm)."""
    layers = [hook_names.layer_of(name) for name in touched]
    if any(layer is None for layer in layers):
        return hook_names.final_norm()
    return hook_names.resid_post(max((layer for layer in layers if layer is not None), default=0))


def _row(value: torch.Tensor, hook: str, row: int, length: int) -> torch.Tensor:
    out = value[row]
    for dim in hook_names.position_dims(hook):
        out = out.narrow(dim, 0, length)
    return out.clone()


def run_batch(model: LoadedModel, requests: Sequence[ForwardRequest]) -> list[ForwardResult]:
    """Run ``requests`` (already validated) as one padded batch; one result per request, in order."""
    lengths = [len(r.tokens) for r in requests]
    width = max(lengths)
    pad = model.tokenizer.eos_token_id or 0
    tokens = torch.full((len(requests), width), pad, dtype=torch.long)  # [batch, pos]
    for row, r in enumerate(requests):
        tokens[row, : len(r.tokens)] = torch.tensor(r.tokens, dtype=torch.long)
    tokens = tokens.to(model.device)
    needs_grad = any(r.needs_grad for r in requests)

    ablations: dict[str, list[tuple[int, int, Ablation]]] = defaultdict(list)
    for row, r in enumerate(requests):
        for ab in r.ablations:
            ablations[hook_names.value_hook(ab.node)].append((row, lengths[row], ab))
    captured_names = sorted(set().union(*(r.captures | r.grad_captures for r in requests)))
    store: dict[str, torch.Tensor] = {}
    hooks: list[tuple[str, HookFn]] = [(name, _ablation_hook(e)) for name, e in ablations.items()]
    hooks += [(name, _capture_hook(name, store, needs_grad)) for name in captured_names]
    touched = set(ablations) | set(captured_names)
    for ae in model.autoencoders.values():
        layers = {hook_names.layer_of(n) for n in touched if n in ae.hook_points}
        hooks += ae.insertion_hooks({layer for layer in layers if layer is not None})

    want_lm_loss = any(r.lm_loss for r in requests)
    want_logits = any(r.needs_logits for r in requests)
    final: dict[str, torch.Tensor] = {}
    stop_at = None if want_lm_loss else (hook_names.final_norm() if want_logits else _last_read(touched))
    if stop_at is not None:  # last on its hook point: every capture there runs first
        hooks.append((stop_at, _stop_hook(final, needs_grad)))

    grad_mode: Any = torch.enable_grad() if needs_grad else torch.inference_mode()
    with grad_mode, _attached(model, hooks):
        rows = torch.arange(len(requests), device=tokens.device)
        last = torch.tensor([n - 1 for n in lengths], device=tokens.device)  # [batch]; built on the host
        if want_lm_loss:
            logits = model.bridge(tokens)  # [batch, pos, vocab]
            last_logits = logits[rows, last]  # [batch, vocab]
        else:
            try:
                model.bridge(tokens)
            except _StopForward:
                pass
            else:
                raise RuntimeError(f"the forward pass never reached {stop_at}")
            if want_logits:  # unembed each row's last position only: the full unembedding dominates small models
                last_hidden = final["x"][rows, last]  # [batch, d_model]
                last_logits = model.bridge.unembed(last_hidden[:, None, :])[:, 0]  # [batch, vocab]
            else:
                last_logits = torch.empty(len(requests), 0)
        losses: list[torch.Tensor | None] = [None] * len(requests)
        for row, r in enumerate(requests):
            if r.loss is not None:
                value = last_logits[row, list(r.loss.target_tokens)].mean()
                if r.loss.distractor_tokens:
                    value = value - last_logits[row, list(r.loss.distractor_tokens)].mean()
                losses[row] = value
        grads: dict[str, torch.Tensor] = {}
        grad_names = sorted(set().union(*(r.grad_captures for r in requests)))
        if grad_names:
            total = torch.stack([v for v in losses if v is not None]).sum()
            inputs = [store[n] for n in grad_names]
            found = torch.autograd.grad(total, inputs, allow_unused=True)
            grads = {
                n: (g if g is not None else torch.zeros_like(store[n])) for n, g in zip(grad_names, found, strict=True)
            }
        lm_losses: list[float | None] = [None] * len(requests)
        if want_lm_loss:
            lm_losses = _lm_losses(logits.detach(), tokens, lengths)

    cpu_store = {n: v.detach().cpu() for n, v in store.items()}
    cpu_grads = {n: g.detach().cpu() for n, g in grads.items()}
    last_cpu = last_logits.detach().cpu()
    results = []
    for row, r in enumerate(requests):
        n = lengths[row]
        loss = losses[row]
        results.append(
            ForwardResult(
                tokens=r.tokens,
                activations={h: _row(cpu_store[h], h, row, n) for h in r.captures | r.grad_captures},
                grads={h: _row(cpu_grads[h], h, row, n) for h in r.grad_captures},
                last_logits=last_cpu[row].clone(),
                lm_loss=lm_losses[row] if r.lm_loss else None,
                loss=float(loss.item()) if loss is not None else None,
            )
        )
    return results


def _lm_losses(logits: torch.Tensor, tokens: torch.Tensor, lengths: list[int]) -> list[float | None]:
    """Per row, mean next-token cross-entropy over its own tokens (padding excluded)."""
    if logits.shape[1] < 2:
        return [None] * len(lengths)
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none")
    ce = ce.view(len(lengths), -1)  # [batch, pos - 1]
    return [float(ce[row, : n - 1].mean().item()) if n > 1 else None for row, n in enumerate(lengths)]
