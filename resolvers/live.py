"""Live fields: a node's values on a prompt, a prompt's tokens, loss, logits and top nodes, ablations.

Every value here comes from the running model through the request's ``ForwardLoader``, so all fields
of one query that read the same prompt (with the same ablations and target) share one forward pass,
and one backward pass when any of them needs gradients. Each resolver validates its own input (node
in range, autoencoder loaded, single-token targets) before asking the loader, so one bad field fails
alone instead of failing the shared pass. A bad target fails only the fields that need it.
The model stack (torch) is imported on first use: a server without a model never loads it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from neuron_explainer.activations.views import RecordView
from neuron_explainer.errors import BadInput, ModelNotLoaded, NeuronExplainerError, NotFound
from neuron_explainer.inference.values import NodeScore, RankBy, TokenLogit
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.provenance import DataSource, Provenance
from neuron_explainer.resolvers.context import Context
from neuron_explainer.resolvers.loaders.forward import ForwardLoader
from neuron_explainer.resolvers.nodes import resolve_node
from neuron_explainer.resolvers.targets import TargetSpec, build_target

if TYPE_CHECKING:
    from neuron_explainer.inference.requests import Ablation, ForwardRequest
    from neuron_explainer.inference.targets import Target
    from neuron_explainer.models.loaded_model import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AblationSpec:
    """An ablation as the client wrote it (node id text, token positions, value), before checking.

    With ``from_prompt`` the values are patched in from the same node on that prompt instead."""

    node_id: str
    token_indices: tuple[int, ...]
    value: float
    from_prompt: str | None = None


@dataclass(frozen=True, slots=True)
class PromptPass:
    """A checked prompt, its ablations and target: what every field of one ``prompt(...)`` shares."""

    text: str
    tokens: tuple[int, ...]
    token_strings: list[str]
    ablations: tuple[Ablation, ...]
    target: Target | None = None
    target_error: BadInput | None = None
    """Why the target given was refused: raised by the fields that need it; the others still resolve."""
    traces: bool = False
    """The client asked to trace a node (so logits are read at its token, or not at all if it was bad)."""

    def require_target(self, what: str) -> Target:
        if self.target_error is not None:
            raise self.target_error
        if self.target is None:
            raise BadInput(
                f"{what} needs a target: give prompt(target: {{targetTokens: [...]}}) or a node", argument="target"
            )
        return self.target


def loader_of(ctx: Context, what: str) -> ForwardLoader:
    """The request's forward loader, or ``MODEL_NOT_LOADED`` naming the field that needed it."""
    loader = ctx.loaders.forward
    if loader is None:
        raise ModelNotLoaded(
            f"{what} needs the live model, but this server runs without one (--run_model False)", field=what
        )
    ctx.cacheable = False
    return loader


def live_provenance(model: LoadedModel) -> Provenance:
    return Provenance(DataSource.LIVE, dataset=None, model=model.name, computed_at=datetime.now(UTC))


async def _patches(
    ctx: Context, loader: ForwardLoader, n_tokens: int, specs: Sequence[AblationSpec]
) -> list[tuple[float, ...] | None]:
    """The patched-in values of every ``fromPrompt`` ablation: one forward per source prompt."""
    from neuron_explainer.inference import live

    model = loader.model
    by_source: dict[str, list[tuple[int, NodeId]]] = {}
    for i, spec in enumerate(specs):
        if spec.from_prompt is None:
            continue
        source = loader.tokens(spec.from_prompt, lambda t: live.tokenize_prompt(model, t))
        if len(source) != n_tokens:
            raise BadInput(
                f"ablations.fromPrompt has {len(source)} tokens; a patch needs a prompt of the same length "
                f"({n_tokens})",
                argument="ablations.fromPrompt",
                tokens=len(source),
                expected=n_tokens,
            )
        node = resolve_node(ctx, spec.node_id)
        live.check_node(model, node)
        by_source.setdefault(spec.from_prompt, []).append((i, node))
    found: list[tuple[float, ...] | None] = [None] * len(specs)

    async def read(text: str, wanted: list[tuple[int, NodeId]]) -> None:
        tokens = loader.tokens(text, lambda t: live.tokenize_prompt(model, t))
        result = await loader.load(live.request_for(tokens, nodes=[n for _, n in wanted], logits=False))
        for i, node in wanted:
            found[i] = live.patch_values(result, node, specs[i].token_indices)

    await asyncio.gather(*(read(text, wanted) for text, wanted in by_source.items()))
    return found


async def prepare_prompt(
    ctx: Context,
    text: str,
    ablations: Sequence[AblationSpec] = (),
    target: TargetSpec | None = None,
    what: str = "prompt",
) -> PromptPass:
    """Tokenize ``text``, check each ablation (running any patch source prompts) and build the target.

    Bad ablations fail the whole prompt (``BAD_USER_INPUT``): they change every value. A bad target is
    kept on the ``PromptPass`` for the fields that need it."""
    from neuron_explainer.inference import live

    loader = loader_of(ctx, what)
    model = loader.model
    tokens = loader.tokens(text, lambda t: live.tokenize_prompt(model, t))
    patches = await _patches(ctx, loader, len(tokens), ablations)
    checked = tuple(
        live.make_ablation(model, resolve_node(ctx, a.node_id), a.token_indices, a.value, len(tokens), patch)
        for a, patch in zip(ablations, patches, strict=True)
    )
    built: Target | None = None
    error: BadInput | None = None
    if target is not None:
        try:
            built = build_target(ctx, model, target, len(tokens))
        except BadInput as exc:
            error = exc
    traces = target is not None and target.node_id is not None
    return PromptPass(text, tokens, loader.token_strings(tokens), checked, built, error, traces)


async def _stored_scale(ctx: Context, node: NodeId) -> list[list[float]] | None:
    """The stored record's top sequences (what live values are normalized against), or ``None``."""
    try:
        stored = await ctx.loaders.records.load(node)
    except NotFound:
        return None
    except NeuronExplainerError as exc:  # unreachable or corrupt data: fall back to the prompt's own scale
        log.warning("normalizing %s by the prompt alone: its stored record could not be read (%s)", node, exc)
        return None
    return [list(r.activations) for r in stored.record.most_positive_activation_records]


async def node_activations(ctx: Context, node: NodeId, prompt: PromptPass) -> tuple[RecordView, Provenance]:
    """``node``'s values on the prompt: per token, or ``attn_write_norm`` rows for a head."""
    from neuron_explainer.activations.attention import flatten_rows
    from neuron_explainer.inference import live

    loader = loader_of(ctx, "activations")
    model = loader.model
    live.check_node(model, node)
    request = live.request_for(
        prompt.tokens, nodes=[node], ablations=prompt.ablations, target=prompt.target, logits=False
    )
    pending = loader.load(request)
    top = await _stored_scale(ctx, node)
    result = await pending
    if node.kind is NodeKind.ATTENTION_HEAD:
        rows = live.attention_rows(model, result, node.layer, node.index)
        flat = flatten_rows(rows)
        normalized = live.normalize_live_pairs(flat, top or ())
        view = RecordView(prompt.token_strings, flat, normalized, rows)
    else:
        values = live.node_activations(model, result, node)
        record_max = max((max(seq) for seq in top if seq), default=None) if top else None
        view = RecordView(prompt.token_strings, values, live.normalize_live(values, record_max), None)
    return view, live_provenance(model)


async def node_activations_on_text(ctx: Context, node: NodeId, text: str) -> tuple[RecordView, Provenance]:
    return await node_activations(ctx, node, await prepare_prompt(ctx, text, what="activations"))


def prompt_request(
    prompt: PromptPass,
    *,
    captures: frozenset[str] = frozenset(),
    grads: frozenset[str] = frozenset(),
    directs: frozenset[str] = frozenset(),
    target: Target | None = None,
    lm_loss: bool = False,
    logits: bool = True,
) -> ForwardRequest:
    """A request on the prompt's pass: its tokens, ablations and (unless ``target`` is given) target."""
    from neuron_explainer.inference.requests import ForwardRequest

    chosen = target if target is not None else prompt.target
    return ForwardRequest(prompt.tokens, captures, grads, prompt.ablations, chosen, lm_loss, logits, directs)


async def lm_loss(ctx: Context, prompt: PromptPass) -> float | None:
    """Mean next-token cross-entropy over the prompt (``None`` for a one-token prompt)."""
    return (await loader_of(ctx, "loss").load(prompt_request(prompt, lm_loss=True))).lm_loss


async def logit_diff(ctx: Context, prompt: PromptPass, targets: Sequence[str], distractors: Sequence[str]) -> float:
    """TDB's ``logit_diff`` at the last token: mean target logits minus mean distractor logits."""
    from neuron_explainer.inference import live
    from neuron_explainer.inference.targets import Target

    loader = loader_of(ctx, "logitDiff")
    loss = live.loss_config(loader.model, targets, distractors)
    result = await loader.load(prompt_request(prompt, target=Target(loss=loss)))
    assert result.loss is not None
    return result.loss


async def top_logits(ctx: Context, prompt: PromptPass, k: int) -> list[TokenLogit]:
    """The k most likely next tokens after the last token, or after the traced token when tracing."""
    from neuron_explainer.inference import live

    if not 1 <= k <= 1000:
        raise BadInput(f"k must be within 1..1000, got {k}", argument="k")
    loader = loader_of(ctx, "topLogits")
    if prompt.traces:
        prompt.require_target("topLogits")  # the logits are read at the traced token: not at a bad one
    return live.top_logits(loader.model, await loader.load(prompt_request(prompt)), k)


async def top_nodes(
    ctx: Context,
    prompt: PromptPass,
    kind: NodeKind,
    k: int,
    by: RankBy,
    targets: Sequence[str] | None,
    distractors: Sequence[str] | None,
    token: int | None,
    lowest: bool,
) -> list[NodeScore]:
    """The ``k`` highest entries over every layer, ranked ``by``; ``ACT_TIMES_GRAD`` differentiates
    ``logit_diff(targets, distractors)`` when ``targets`` are given, else the prompt's target. Heads rank
    per (query, key) pair. Ranking runs in a thread (whole-model topk)."""
    from neuron_explainer.inference import live
    from neuron_explainer.inference.targets import Target

    model = loader_of(ctx, "topNodes").model
    if not 1 <= k <= 10_000:
        raise BadInput(f"k must be within 1..10000, got {k}", argument="k")
    target: Target | None = None  # the prompt's own: forward-only rankings share its pass
    if targets is not None:
        loss = live.loss_config(model, targets, distractors or ())
        if by is RankBy.ACT_TIMES_GRAD:
            target = Target(loss=loss)
    elif by is RankBy.ACT_TIMES_GRAD:
        target = prompt.require_target("topNodes(by: ACT_TIMES_GRAD)")
    if token is not None and not 0 <= token < len(prompt.tokens):
        raise BadInput(f"token {token} out of range: the prompt has {len(prompt.tokens)} tokens", argument="token")
    captures, grads = live.hooks_for_top_nodes(model, kind, by)
    request = prompt_request(prompt, captures=captures, grads=grads, target=target, logits=False)
    result = await loader_of(ctx, "topNodes").load(request)
    return await asyncio.to_thread(live.top_nodes, model, result, kind, k, by, token=token, largest=not lowest)
