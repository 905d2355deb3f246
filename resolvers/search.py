"""Searching stored explanations by meaning, and how far the scorers agree over the stored nodes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from neuron_explainer.errors import BadInput, ModelNotLoaded
from neuron_explainer.explanations.embeddings import PACKAGE
from neuron_explainer.explanations.metrics import spearman
from neuron_explainer.explanations.search_index import ExplanationIndex, SearchHit
from neuron_explainer.nodes import NodeId
from neuron_explainer.resolvers.context import Context
from neuron_explainer.resolvers.nodes import resolve_node


def _index(ctx: Context) -> ExplanationIndex:
    index = ctx.services.search_index
    if index is None:
        raise ModelNotLoaded(f"this server has no explanation search (it needs the package {PACKAGE})", package=PACKAGE)
    return index


async def search_explanations(
    ctx: Context,
    text: str,
    first: int,
    model: str | None,
    kind: str | None,
    layer: int | None,
    method: str | None,
) -> list[tuple[NodeId, SearchHit]]:
    """Best ``first`` stored explanations by cosine similarity to ``text`` (exact), with their nodes."""
    ctx.cacheable = False  # the index grows as explanations are stored
    hits = await _index(ctx).search(text, first, model=model, kind=kind, layer=layer, method=method)
    out = []
    for hit in hits:
        try:
            out.append((resolve_node(ctx, hit.node), hit))
        except Exception:  # a node this server cannot bound-check (another model's) is still a hit
            out.append((ctx.services.parse_node_id(hit.node), hit))
    return out


@dataclass(frozen=True, slots=True)
class Agreement:
    method_a: str
    method_b: str
    explanations: int
    """(node, explanation) pairs scored by both methods (with defined scores)."""
    spearman: float | None


async def scorer_agreement(
    ctx: Context, methods: Sequence[str] | None, model: str | None, kind: str | None, layer: int | None
) -> list[Agreement]:
    """Spearman rank correlation between each pair of methods' scores over the explanations both scored."""
    ctx.cacheable = False
    index = _index(ctx)
    await index.flush()
    await index.refresh()
    rows = []
    for hit in index.entries():
        parts = hit.node.split("/")
        if model is not None and "/".join(parts[:-3]) != model:
            continue
        if kind is not None and parts[-3] != kind:
            continue
        if layer is not None and parts[-2] != str(layer):
            continue
        rows.append(hit.scores)
    names = list(methods) if methods is not None else sorted({m for r in rows for m in r})
    if methods is not None and len(set(names)) < 2:
        raise BadInput("scorerAgreement needs at least two distinct methods", argument="methods")
    out = []
    for a, b in itertools.combinations(dict.fromkeys(names), 2):
        pairs = [(r[a], r[b]) for r in rows if r.get(a) is not None and r.get(b) is not None]
        rho = spearman([p[0] for p in pairs], [p[1] for p in pairs]) if pairs else None  # type: ignore[misc]
        out.append(Agreement(a, b, len(pairs), rho))
    return out
