"""The debugger's fields on a prompt: node table (and two-condition table), token attribution,
component sums, token-pair attribution, attention pattern, the target's value.

Each asks the request's ``ForwardLoader`` for what it reads on the prompt's pass — tensors for the
kinds asked, their gradients of the target and direct-effect projections — so all of them share one
forward and one backward; tables and sums are computed in a thread and memoized on the cached pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from neuron_explainer.errors import BadInput
from neuron_explainer.inference.values import Column, NodeValues, TableKind, TokenPair, TokenSums
from neuron_explainer.nodes import NodeKind
from neuron_explainer.resolvers.context import Context
from neuron_explainer.resolvers.live import PromptPass, loader_of, prompt_request
from neuron_explainer.resolvers.nodes import resolve_node

if TYPE_CHECKING:
    from neuron_explainer.inference.node_table import ComparisonRow, TableRow
    from neuron_explainer.inference.requests import ForwardRequest, ForwardResult
    from neuron_explainer.models.loaded_model import LoadedModel

MAX_K = 1000
T = TypeVar("T")
_LATENT_NODE_KIND = {
    TableKind.MLP_AUTOENCODER_LATENT: NodeKind.MLP_AUTOENCODER_LATENT,
    TableKind.ATTENTION_AUTOENCODER_LATENT: NodeKind.ATTENTION_AUTOENCODER_LATENT,
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """Two conditions side by side (TDB's left/right): this prompt, and another prompt or ablations."""

    left: PromptPass
    right: PromptPass


def _kinds(model: LoadedModel, kinds: Sequence[TableKind] | None) -> tuple[TableKind, ...]:
    from neuron_explainer.inference.node_table import DEFAULT_KINDS

    chosen = tuple(dict.fromkeys(kinds)) if kinds else DEFAULT_KINDS
    for kind in chosen:
        node_kind = _LATENT_NODE_KIND.get(kind)
        if node_kind is not None and model.autoencoder_for(node_kind) is None:
            raise BadInput(f"no {node_kind.value} autoencoder is loaded: {kind.name} rows need one", argument="kinds")
    return chosen


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise BadInput(f"k must be within 1..{MAX_K}, got {k}", argument="k")


def _table_request(model: LoadedModel, prompt: PromptPass, kinds: Sequence[TableKind]) -> ForwardRequest:
    from neuron_explainer.inference.node_table import table_hooks

    values, directs = table_hooks(model, kinds)
    return prompt_request(prompt, captures=values, grads=directs, directs=directs, logits=False)


async def _table_pass(
    ctx: Context, prompt: PromptPass, kinds: Sequence[TableKind], what: str
) -> tuple[ForwardRequest, ForwardResult]:
    prompt.require_target(what)
    loader = loader_of(ctx, what)
    request = _table_request(loader.model, prompt, kinds)
    return request, await loader.load(request)


async def node_table(
    ctx: Context,
    prompt: PromptPass,
    k: int,
    kinds: Sequence[TableKind] | None,
    per_kind: bool,
    present: Callable[[list[TableRow]], T],
) -> T:
    """The table's rows as ``present`` makes them (the schema's row objects), memoized with the pass:
    a researcher clicking through one prompt gets the same objects back, built once."""
    from neuron_explainer.inference import node_table as tables

    _check_k(k)
    loader = loader_of(ctx, "nodeTable")
    chosen = _kinds(loader.model, kinds)
    request, result = await _table_pass(ctx, prompt, chosen, "nodeTable")
    model = loader.model
    return await loader.derived(
        request,
        result,
        ("nodeTable", k, chosen, per_kind, present),
        lambda: present(tables.node_table(model, result, chosen, k, per_kind)),
    )


async def compare_tables(
    ctx: Context, comparison: Comparison, k: int, kinds: Sequence[TableKind] | None, per_kind: bool
) -> list[ComparisonRow]:
    from neuron_explainer.inference import node_table as tables

    _check_k(k)
    loader = loader_of(ctx, "nodeTable")
    model = loader.model
    left, right = comparison.left, comparison.right
    if len(left.tokens) != len(right.tokens):
        raise BadInput(
            f"the two conditions' prompts have {len(left.tokens)} and {len(right.tokens)} tokens: a table compares "
            "prompts of the same length",
            argument="compareWith.text",
        )
    chosen = _kinds(model, kinds)
    # Both loads in one tick: the engine runs the two conditions as one padded batch.
    (_, left_result), (_, right_result) = await asyncio.gather(
        *(_table_pass(ctx, p, chosen, "nodeTable") for p in (left, right))
    )
    return await loader.derived(
        _table_request(model, left, chosen),
        left_result,
        ("compare", right.tokens, right.ablations, right.target, k, chosen, per_kind),
        lambda: tables.compare_tables(model, left_result, right_result, chosen, k, per_kind),
    )


def difference(row: ComparisonRow) -> NodeValues:
    return row.difference


async def token_attribution(ctx: Context, prompt: PromptPass) -> list[float]:
    from neuron_explainer.inference import per_token
    from neuron_explainer.models import hook_names

    prompt.require_target("tokenAttribution")
    loader = loader_of(ctx, "tokenAttribution")
    hook = frozenset({hook_names.embeddings()})
    result = await loader.load(prompt_request(prompt, captures=hook, grads=hook, logits=False))
    return per_token.token_attribution(result)


async def component_sums(ctx: Context, prompt: PromptPass, column: Column) -> list[TokenSums]:
    from neuron_explainer.inference import per_token

    loader = loader_of(ctx, "componentSums")
    request, result = await _table_pass(ctx, prompt, per_token.PER_TOKEN_KINDS, "componentSums")
    model = loader.model
    return await loader.derived(
        request, result, ("componentSums", column), lambda: per_token.component_sums(model, result, column)
    )


async def token_pair_attribution(
    ctx: Context, prompt: PromptPass, column: Column, k: int, lowest: bool
) -> list[TokenPair]:
    from neuron_explainer.inference import per_token
    from neuron_explainer.inference.values import TableKind

    _check_k(k)
    loader = loader_of(ctx, "tokenPairAttribution")
    request, result = await _table_pass(ctx, prompt, (TableKind.ATTENTION_HEAD,), "tokenPairAttribution")
    model = loader.model
    return await loader.derived(
        request,
        result,
        ("tokenPairs", column, k, lowest),
        lambda: per_token.token_pair_attribution(model, result, column, k, lowest),
    )


async def attention_pattern(ctx: Context, prompt: PromptPass, node_id: str) -> list[list[float]]:
    from neuron_explainer.inference import live
    from neuron_explainer.models import hook_names

    loader = loader_of(ctx, "attentionPattern")
    node = resolve_node(ctx, node_id)
    if node.kind is not NodeKind.ATTENTION_HEAD:
        raise BadInput(f"{node} is not an attention head: only heads have an attention pattern", argument="nodeId")
    live.check_node(loader.model, node)
    captures = frozenset({hook_names.attn_pattern(node.layer)})
    result = await loader.load(prompt_request(prompt, captures=captures, logits=False))
    return live.attention_pattern(result, node.layer, node.index)


async def target_value(ctx: Context, prompt: PromptPass) -> float | None:
    """The scalar the backward pass differentiates: the traced scalar, or the loss."""
    from neuron_explainer.inference.forward import target_reads

    target = prompt.require_target("targetValue")
    loader = loader_of(ctx, "targetValue")
    read = frozenset({target_reads(loader.model, target)[0]})
    result = await loader.load(prompt_request(prompt, captures=read, grads=read, logits=False))
    return result.traced if target.trace is not None else result.loss
