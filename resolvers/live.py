"""Live fields: a node's values on a prompt, a prompt's tokens, loss, logits and top nodes, ablations.

Every value here comes from the running model through the request's ``ForwardLoader``, so all fields
of one query that read the same prompt (with the same ablations and loss) share one forward pass.
Each resolver validates its own input (node in range, autoencoder loaded, single-token targets)
before asking the loader, so one bad field fails alone instead of failing the shared pass.
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
from neuron_explainer.errors import ModelNotLoaded, NeuronExplainerError, NotFound
from neuron_explainer.inference.values import NodeScore, RankBy, TokenLogit
from neuron_explainer.nodes import NodeId, NodeKind
from neuron_explainer.provenance import DataSource, Provenance
from resolvers.context import Context
from resolvers.loaders.forward import ForwardLoader
from resolvers.nodes import resolve_node

if TYPE_CHECKING:
    from neuron_explainer.inference.requests import Ablation, ForwardRequest, ForwardResult, LossConfig
    from neuron_explainer.models.loaded_model import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AblationSpec:
    """An ablation as the client wrote it (node id text, token positions, value), before checking."""

    node_id: str
    token_indices: tuple[int, ...]
    value: float


@dataclass(frozen=True, slots=True)
class PromptPass:
    """A checked prompt and its ablations: what every field of one ``prompt(...)`` shares."""

    text: str
    tokens: tuple[int, ...]
    token_strings: list[str]
    ablations: tuple[Ablation, ...]


def _loader(ctx: Context, what: str) -> ForwardLoader:
    """The request's forward loader, or ``MODEL_NOT_LOADED`` naming the field that needed it."""
    loader = ctx.loaders.forward
    if loader is None:
        raise ModelNotLoaded(
            f"{what} needs the live model, but this server runs without one (--run_model False)", field=what
        )
    ctx.cacheable = False
    return loader


def _live_provenance(model: LoadedModel) -> Provenance:
    return Provenance(DataSource.LIVE, dataset=None, model=model.name, computed_at=datetime.now(UTC))


def prepare_prompt(ctx: Context, text: str, ablations: Sequence[AblationSpec] = (), what: str = "prompt") -> PromptPass:
    """Tokenize ``text`` and check each ablation against the running model (``BAD_USER_INPUT`` if wrong)."""
    from neuron_explainer.inference import live

    loader = _loader(ctx, what)
    model = loader.model
    tokens = loader.tokens(text, lambda t: live.tokenize_prompt(model, t))
    checked = tuple(
        live.make_ablation(model, resolve_node(ctx, a.node_id), a.token_indices, a.value, len(tokens))
        for a in ablations
    )
    return PromptPass(text, tokens, loader.token_strings(tokens), checked)


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

    loader = _loader(ctx, "activations")
    model = loader.model
    live.check_node(model, node)
    pending = loader.load(live.request_for(prompt.tokens, nodes=[node], ablations=prompt.ablations, logits=False))
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
    return view, _live_provenance(model)


async def node_activations_on_text(ctx: Context, node: NodeId, text: str) -> tuple[RecordView, Provenance]:
    return await node_activations(ctx, node, prepare_prompt(ctx, text, what="activations"))


async def _result(ctx: Context, request: ForwardRequest, what: str) -> tuple[LoadedModel, ForwardResult]:
    loader = _loader(ctx, what)
    return loader.model, await loader.load(request)


def _request(
    prompt: PromptPass,
    *,
    captures: frozenset[str] = frozenset(),
    grads: frozenset[str] = frozenset(),
    loss: LossConfig | None = None,
    lm_loss: bool = False,
    logits: bool = True,
) -> ForwardRequest:
    from neuron_explainer.inference.requests import ForwardRequest

    return ForwardRequest(prompt.tokens, captures, grads, prompt.ablations, loss, lm_loss, logits)


async def lm_loss(ctx: Context, prompt: PromptPass) -> float | None:
    """Mean next-token cross-entropy over the prompt (``None`` for a one-token prompt)."""
    _, result = await _result(ctx, _request(prompt, lm_loss=True), "loss")
    return result.lm_loss


async def logit_diff(ctx: Context, prompt: PromptPass, targets: Sequence[str], distractors: Sequence[str]) -> float:
    """TDB's ``logit_diff`` at the last token: mean target logits minus mean distractor logits."""
    from neuron_explainer.inference import live

    model = _loader(ctx, "logitDiff").model
    loss = live.loss_config(model, targets, distractors)
    _, result = await _result(ctx, _request(prompt, loss=loss), "logitDiff")
    assert result.loss is not None
    return result.loss


async def top_logits(ctx: Context, prompt: PromptPass, k: int) -> list[TokenLogit]:
    from neuron_explainer.errors import BadInput
    from neuron_explainer.inference import live

    if not 1 <= k <= 1000:
        raise BadInput(f"k must be within 1..1000, got {k}", argument="k")
    model, result = await _result(ctx, _request(prompt), "topLogits")
    return live.top_logits(model, result, k)


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
    """The ``k`` highest (node, token) entries over every layer, ranked ``by``; ``ACT_TIMES_GRAD``
    needs ``targets`` (the gradient is of ``logit_diff``). Ranking runs in a thread (whole-model topk)."""
    from neuron_explainer.errors import BadInput
    from neuron_explainer.inference import live

    model = _loader(ctx, "topNodes").model
    if not 1 <= k <= 10_000:
        raise BadInput(f"k must be within 1..10000, got {k}", argument="k")
    loss = live.loss_config(model, targets, distractors or ()) if targets is not None else None
    if by is RankBy.ACT_TIMES_GRAD and loss is None:
        raise BadInput("ranking by ACT_TIMES_GRAD needs targetTokens (the loss to differentiate)", argument="by")
    if token is not None and not 0 <= token < len(prompt.tokens):
        raise BadInput(f"token {token} out of range: the prompt has {len(prompt.tokens)} tokens", argument="token")
    captures, grads = live.hooks_for_top_nodes(model, kind, by)
    request = _request(
        prompt, captures=captures, grads=grads, loss=loss if by is RankBy.ACT_TIMES_GRAD else None, logits=False
    )
    _, result = await _result(ctx, request, "topNodes")
    return await asyncio.to_thread(live.top_nodes, model, result, kind, k, by, token=token, largest=not lowest)
