"""``Query.searchExplanations`` and ``Query.scorerAgreement``. Thin: ``resolvers/search.py`` decides."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from neuron_explainer.resolvers import search as search_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.schema.jobs import MethodScore
from neuron_explainer.schema.methods import ScoreMethod, method_name, method_names
from neuron_explainer.schema.nodes import Node, node_of
from neuron_explainer.schema.policy.declare import fixed, per_item, plain


@strawberry.type(description="A stored explanation found by searchExplanations.", directives=[plain()])
class ExplanationHit:
    node: Node
    text: str
    similarity: float = strawberry.field(description="Cosine similarity of the search text and the explanation.")
    score: float | None = strawberry.field(description="The explanation's score by `method`.")
    method: str = strawberry.field(
        description="The scoring method `score` is from: the one asked for, else the first of baseline, "
        "all-at-once, detection, fuzzing, embedding, token-lookup the text was scored with."
    )
    scores: list[MethodScore] = strawberry.field(description="Every method this text was scored with on the node.")
    dataset: str


@strawberry.type(
    description="How far two scoring methods agree over the explanations both scored.", directives=[plain()]
)
class ScorerAgreement:
    method_a: str
    method_b: str
    explanations: int = strawberry.field(description="(node, explanation) pairs scored by both.")
    spearman: float | None = strawberry.field(
        description="Spearman rank correlation of the two methods' scores; null with fewer than 2 pairs."
    )


@strawberry.type
class SearchQuery:
    @strawberry.field(
        description="Stored explanations ranked by meaning: exact cosine similarity of all-MiniLM-L6-v2 "
        "sentence embeddings (a local model), over an index kept in the store. Empty text or first outside "
        "1..100: BAD_USER_INPUT; no embedding model: MODEL_NOT_LOADED.",
        directives=[per_item("first", 10)],
    )
    async def search_explanations(
        self,
        info: Info[Context, None],
        text: str,
        first: int = 10,
        model: str | None = None,
        kind: Annotated[str | None, strawberry.argument(description="A node kind or an autoencoder name.")] = None,
        layer: int | None = None,
        method: Annotated[
            ScoreMethod | None,  # type: ignore[valid-type]
            strawberry.argument(description="Only explanations scored this way."),
        ] = None,
    ) -> list[ExplanationHit]:
        found = await search_resolvers.search_explanations(
            info.context, text, first, model, kind, layer, method_name(method)
        )
        return [
            ExplanationHit(
                node=node_of(node),
                text=hit.text,
                similarity=hit.similarity,
                score=hit.score,
                method=hit.method,
                scores=[MethodScore(method=m, score=s) for m, s in hit.scores.items()],
                dataset=hit.dataset,
            )
            for node, hit in found
        ]

    @strawberry.field(
        description="Agreement between scorers (Spearman rank correlation of their scores) over the stored "
        "explanations both scored; every pair of `methods` (default: every method in the index).",
        directives=[fixed(20)],
    )
    async def scorer_agreement(
        self,
        info: Info[Context, None],
        methods: list[ScoreMethod] | None = None,  # type: ignore[valid-type]
        model: str | None = None,
        kind: str | None = None,
        layer: int | None = None,
    ) -> list[ScorerAgreement]:
        rows = await search_resolvers.scorer_agreement(info.context, method_names(methods), model, kind, layer)
        return [
            ScorerAgreement(method_a=r.method_a, method_b=r.method_b, explanations=r.explanations, spearman=r.spearman)
            for r in rows
        ]
