"""Live inference on a user's prompt: ``Query.prompt`` and what it returns, and the engine's counters.

Every live field is nullable: a bad target token, an out-of-range node or a server without a model
fails that field alone (with ``BAD_USER_INPUT`` / ``MODEL_NOT_LOADED``), and the rest of the query
still resolves. All fields of one ``prompt`` share one forward pass, and one backward pass when any
needs gradients, per distinct target (see ``resolvers/loaders/forward.py``); recent passes are kept
across requests, so asking again on the same prompt, ablations and target runs nothing.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from neuron_explainer.inference.values import Column, RankBy, TableKind
from neuron_explainer.inference.values import NodeScore as CoreNodeScore
from neuron_explainer.inference.values import TokenLogit as CoreTokenLogit
from neuron_explainer.resolvers import debugger as debugger_resolvers
from neuron_explainer.resolvers import live as live_resolvers
from neuron_explainer.resolvers import model as model_resolvers
from neuron_explainer.resolvers.context import Context
from neuron_explainer.resolvers.debugger import Comparison
from neuron_explainer.resolvers.live import AblationSpec, PromptPass
from neuron_explainer.resolvers.nodes import resolve_node
from neuron_explainer.resolvers.targets import TargetSpec
from neuron_explainer.schema.debugger import (
    NodeTableComparisonRow,
    NodeTableRow,
    TargetInput,
    TokenComponentSums,
    TokenPairValue,
)
from neuron_explainer.schema.enums import NodeKind
from neuron_explainer.schema.nodes import Node, node_of
from neuron_explainer.schema.policy.declare import fixed, live_prompt, plain
from neuron_explainer.schema.policy.execution import CompletedOnce
from neuron_explainer.schema.records import ActivationRecord

if TYPE_CHECKING:
    from neuron_explainer.inference.node_table import TableRow

strawberry.enum(RankBy, name="RankBy", description="What to rank nodes by on a prompt.")

_KINDS_HELP = "Node kinds (default EMBEDDING, MLP_NEURON, ATTENTION_HEAD; latents of a loaded autoencoder when asked)."


@strawberry.input(description="Set a node's value at some tokens before the forward pass continues.")
class AblationInput:
    node_id: strawberry.ID
    token_indices: list[int] | None = strawberry.field(
        default=None, description="Token positions (query tokens for heads); null or empty: every token."
    )
    value: float = strawberry.field(
        default=0.0, description="The value written; for heads, into the attention pattern at every key."
    )
    from_prompt: str | None = strawberry.field(
        default=None,
        description="Patch instead: take the node's values at these tokens from this prompt (same token count), e.g. "
        "clean values into a corrupted prompt. For heads the whole attention row of each query token.",
    )

    def spec(self) -> AblationSpec:
        return AblationSpec(str(self.node_id), tuple(self.token_indices or ()), float(self.value), self.from_prompt)


@strawberry.type(description="One of the most likely next tokens after the prompt.", directives=[plain()])
class TokenLogit:
    token_id: int
    token: str
    logit: float
    probability: float

    @classmethod
    def of(cls, t: CoreTokenLogit) -> TokenLogit:
        return cls(token_id=t.token_id, token=t.token, logit=t.logit, probability=t.probability)


@strawberry.type(
    description="A ranked entry on a prompt: a node at a token (a head at a (query, key) pair).", directives=[plain()]
)
class NodeScore:
    node: Node
    token: int = strawberry.field(description="Token position; the query token for attention heads.")
    key_token: int | None = strawberry.field(description="Attention heads: the key token of the pair.")
    value: float

    @classmethod
    def of(cls, s: CoreNodeScore) -> NodeScore:
        return cls(node=node_of(s.node), token=s.token, key_token=s.key_token, value=s.value)


def _table_rows(rows: list[TableRow]) -> list[NodeTableRow]:
    """Memoized with the pass (see ``resolvers.debugger.node_table``): completed to JSON once per selection."""
    return CompletedOnce(NodeTableRow.of(r.entry, r.values) for r in rows)


@strawberry.type(
    description="A prompt run through the live model (with any ablations, and a target to differentiate).",
    directives=[plain()],
)
class PromptAnalysis:
    text: str
    tokens: list[str] = strawberry.field(description="Each token decoded alone; no BOS token is added.")
    token_ids: list[int]
    prompt: strawberry.Private[PromptPass]

    @strawberry.field(
        description="Mean next-token cross-entropy over the prompt; null for a single token.", directives=[fixed(1)]
    )
    async def loss(self, info: Info[Context, None]) -> float | None:
        return await live_resolvers.lm_loss(info.context, self.prompt)

    @strawberry.field(
        description="TDB's logit_diff at the last token: mean target logits minus mean distractor logits "
        "(each string exactly one token, e.g. ' Paris' with its space).",
        directives=[fixed(1)],
    )
    async def logit_diff(
        self, info: Info[Context, None], target_tokens: list[str], distractor_tokens: list[str] | None = None
    ) -> float | None:
        return await live_resolvers.logit_diff(info.context, self.prompt, target_tokens, distractor_tokens or [])

    @strawberry.field(
        description="The k most likely next tokens after the last token; after the traced token when the target "
        "traces a node (TDB's topOutputTokenLogits).",
        directives=[fixed(1)],
    )
    async def top_logits(self, info: Info[Context, None], k: int = 10) -> list[TokenLogit] | None:
        return [TokenLogit.of(t) for t in await live_resolvers.top_logits(info.context, self.prompt, k)]

    @strawberry.field(
        description="The k highest entries over every layer: (node, token), and for heads (head, query, key) pairs. "
        "ACTIVATION: the node's value (heads: the attention probability of the pair, as TDB; before this release, "
        "heads ranked by write norm summed over keys); WRITE_NORM: value x norm of its write to the residual stream; "
        "ACT_TIMES_GRAD: value x gradient of logitDiff(targetTokens, distractorTokens) when given, else of the "
        "prompt's target (final LayerNorm scale detached by default). Latent kinds rank the loaded autoencoder's "
        "latents.",
        directives=[fixed(10)],
    )
    async def top_nodes(
        self,
        info: Info[Context, None],
        kind: NodeKind,
        k: int = 10,
        by: RankBy = RankBy.ACTIVATION,
        target_tokens: list[str] | None = None,
        distractor_tokens: list[str] | None = None,
        token: int | None = None,
        lowest: bool = False,
    ) -> list[NodeScore] | None:
        scores = await live_resolvers.top_nodes(
            info.context, self.prompt, kind, k, by, target_tokens, distractor_tokens, token, lowest
        )
        return [NodeScore.of(s) for s in scores]

    @strawberry.field(
        description="One node's values on this prompt (after the ablations), as Node.activations.",
        directives=[fixed(1)],
    )
    async def activations(self, info: Info[Context, None], node_id: strawberry.ID) -> ActivationRecord | None:
        node = resolve_node(info.context, str(node_id))
        view, provenance = await live_resolvers.node_activations(info.context, node, self.prompt)
        return ActivationRecord.of(view, provenance)

    # ---- the debugger ---------------------------------------------------------------------------
    # The debugger's prices: a backward pass costs about two forwards, and tables rank every node of every layer.
    @strawberry.field(
        description="The scalar the backward pass differentiates: the loss, or the traced node's scalar.",
        directives=[fixed(20)],
    )
    async def target_value(self, info: Info[Context, None]) -> float | None:
        return await debugger_resolvers.target_value(info.context, self.prompt)

    @strawberry.field(
        description="TDB's node table for the target: per column the k largest and k smallest entries over all kinds "
        "asked together (perKind: k of each kind), unioned in the order write norm, act x grad, direct effect, "
        "activation; every column filled for every row. Needs a target.",
        directives=[fixed(30)],
    )
    async def node_table(
        self,
        info: Info[Context, None],
        k: int = 20,
        kinds: Annotated[list[TableKind] | None, strawberry.argument(description=_KINDS_HELP)] = None,
        per_kind: bool = False,
    ) -> list[NodeTableRow] | None:
        return await debugger_resolvers.node_table(info.context, self.prompt, k, kinds, per_kind, _table_rows)

    @strawberry.field(
        description="TDB's token attribution: per token, its embedding (token + position) times the target's "
        "gradient there, summed over d_model. Needs a target.",
        directives=[fixed(20)],
    )
    async def token_attribution(self, info: Info[Context, None]) -> list[float] | None:
        return await debugger_resolvers.token_attribution(info.context, self.prompt)

    @strawberry.field(
        description="Per token, one node-table column summed over the embedding, every MLP neuron, and every head's "
        "pairs as query (attentionFrom) and as key (attentionTo). Needs a target.",
        directives=[fixed(30)],
    )
    async def component_sums(
        self, info: Info[Context, None], column: Column = Column.ACT_TIMES_GRAD
    ) -> list[TokenComponentSums] | None:
        sums = await debugger_resolvers.component_sums(info.context, self.prompt, column)
        return [TokenComponentSums.of(s) for s in sums]

    @strawberry.field(
        description="The k (query, key) token pairs with the largest (lowest: smallest) column summed over every head "
        "of every layer: where attention matters most for the target. Needs a target.",
        directives=[fixed(30)],
    )
    async def token_pair_attribution(
        self, info: Info[Context, None], k: int = 10, column: Column = Column.ACT_TIMES_GRAD, lowest: bool = False
    ) -> list[TokenPairValue] | None:
        pairs = await debugger_resolvers.token_pair_attribution(info.context, self.prompt, column, k, lowest)
        return [TokenPairValue.of(p) for p in pairs]

    @strawberry.field(
        description="A head's attention pattern on this prompt: row q = its probabilities over keys 0..q.",
        directives=[fixed(1)],
    )
    async def attention_pattern(self, info: Info[Context, None], node_id: strawberry.ID) -> list[list[float]] | None:
        return await debugger_resolvers.attention_pattern(info.context, self.prompt, str(node_id))

    @strawberry.field(
        description="TDB's two-condition view: this prompt against another condition — another prompt of the same "
        "length (text; default this one), other ablations (default none) and target (default this one).",
        directives=[fixed(30)],
    )
    async def compare_with(
        self,
        info: Info[Context, None],
        text: str | None = None,
        ablations: list[AblationInput] | None = None,
        target: TargetInput | None = None,
    ) -> PromptComparison | None:
        specs = [a.spec() for a in ablations or []]
        spec = target.spec() if target is not None else self.prompt_target
        other = await live_resolvers.prepare_prompt(
            info.context, text if text is not None else self.text, specs, spec, what="compareWith"
        )
        return PromptComparison(comparison=Comparison(self.prompt, other), other=PromptAnalysis.of(other))

    prompt_target: strawberry.Private[TargetSpec | None] = None

    @classmethod
    def of(cls, prompt: PromptPass, target: TargetSpec | None = None) -> PromptAnalysis:
        return cls(
            text=prompt.text,
            tokens=prompt.token_strings,
            token_ids=list(prompt.tokens),
            prompt=prompt,
            prompt_target=target,
        )


@strawberry.type(
    description="Two conditions side by side: rows are the union of both tables' nodes.", directives=[plain()]
)
class PromptComparison:
    other: PromptAnalysis = strawberry.field(description="The compared condition (its own fields all work).")
    comparison: strawberry.Private[Comparison]

    @strawberry.field(
        description="Both conditions' node tables as one: the union of both sides' picks (this prompt's first), "
        "each row with both sides' columns and right - left.",
        directives=[fixed(30)],
    )
    async def node_table(
        self,
        info: Info[Context, None],
        k: int = 20,
        kinds: Annotated[list[TableKind] | None, strawberry.argument(description=_KINDS_HELP)] = None,
        per_kind: bool = False,
    ) -> list[NodeTableComparisonRow] | None:
        rows = await debugger_resolvers.compare_tables(info.context, self.comparison, k, kinds, per_kind)
        return [NodeTableComparisonRow.of(r.entry, r.left, r.right, r.difference) for r in rows]


@strawberry.type(description="Counters of the inference engine (for tests and monitoring).", directives=[plain()])
class EngineStats:
    forward_count: int = strawberry.field(description="Forward passes run since start (an OOM retry counts each).")
    backward_count: int = strawberry.field(
        description="Backward passes run since start (one per batch with gradients)."
    )
    oom_count: int
    max_batch_size: int
    max_batch_wait_ms: float


@strawberry.type
class LiveQuery:
    @strawberry.field(
        description="Run a prompt through the live model, optionally with ablations (or patches) and a target: what "
        "the backward pass of its gradient fields differentiates.",
        directives=[live_prompt("text")],
    )
    async def prompt(
        self,
        info: Info[Context, None],
        text: str,
        ablations: list[AblationInput] | None = None,
        target: TargetInput | None = None,
    ) -> PromptAnalysis | None:
        spec = target.spec() if target is not None else None
        prompt = await live_resolvers.prepare_prompt(info.context, text, [a.spec() for a in ablations or []], spec)
        return PromptAnalysis.of(prompt, spec)

    @strawberry.field(description="The inference engine's counters; null without a model.", directives=[plain()])
    def engine_stats(self, info: Info[Context, None]) -> EngineStats | None:
        facts = model_resolvers.engine_stats(info.context)
        return EngineStats(**dataclasses.asdict(facts)) if facts is not None else None
