"""Live inference on a user's prompt: ``Query.prompt`` and what it returns, and the engine's counters.

Every live field is nullable: a bad target token, an out-of-range node or a server without a model
fails that field alone (with ``BAD_USER_INPUT`` / ``MODEL_NOT_LOADED``), and the rest of the query
still resolves. All fields of one ``prompt`` share one forward pass per distinct loss (see
``resolvers/loaders/forward.py``).
"""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from neuron_explainer.inference.values import NodeScore as CoreNodeScore
from neuron_explainer.inference.values import RankBy
from neuron_explainer.inference.values import TokenLogit as CoreTokenLogit
from resolvers import live as live_resolvers
from resolvers.context import Context
from resolvers.live import AblationSpec, PromptPass
from resolvers.nodes import resolve_node
from schema.enums import NodeKind
from schema.nodes import Node, node_of
from schema.records import ActivationRecord

strawberry.enum(RankBy, name="RankBy", description="What to rank nodes by on a prompt.")


@strawberry.input(description="Set a node's value at some tokens before the forward pass continues.")
class AblationInput:
    node_id: strawberry.ID
    token_indices: list[int] | None = strawberry.field(
        default=None, description="Token positions (query tokens for heads); null or empty: every token."
    )
    value: float = strawberry.field(
        default=0.0, description="The value written; for heads, into the attention pattern at every key."
    )


@strawberry.type(description="One of the most likely next tokens after the prompt.")
class TokenLogit:
    token_id: int
    token: str
    logit: float
    probability: float

    @classmethod
    def of(cls, t: CoreTokenLogit) -> TokenLogit:
        return cls(token_id=t.token_id, token=t.token, logit=t.logit, probability=t.probability)


@strawberry.type(description="A (node, token) entry of a ranking on a prompt.")
class NodeScore:
    node: Node
    token: int = strawberry.field(description="Token position; the query token for attention heads.")
    value: float

    @classmethod
    def of(cls, s: CoreNodeScore) -> NodeScore:
        return cls(node=node_of(s.node), token=s.token, value=s.value)


@strawberry.type(description="A prompt run through the live model (with any ablations).")
class PromptAnalysis:
    text: str
    tokens: list[str] = strawberry.field(description="Each token decoded alone; no BOS token is added.")
    token_ids: list[int]
    prompt: strawberry.Private[PromptPass]

    @strawberry.field(description="Mean next-token cross-entropy over the prompt; null for a single token.")
    async def loss(self, info: Info[Context, None]) -> float | None:
        return await live_resolvers.lm_loss(info.context, self.prompt)

    @strawberry.field(
        description="TDB's logit_diff at the last token: mean target logits minus mean distractor logits "
        "(each string exactly one token, e.g. ' Paris' with its space)."
    )
    async def logit_diff(
        self, info: Info[Context, None], target_tokens: list[str], distractor_tokens: list[str] | None = None
    ) -> float | None:
        return await live_resolvers.logit_diff(info.context, self.prompt, target_tokens, distractor_tokens or [])

    @strawberry.field(description="The k most likely next tokens after the prompt.")
    async def top_logits(self, info: Info[Context, None], k: int = 10) -> list[TokenLogit] | None:
        return [TokenLogit.of(t) for t in await live_resolvers.top_logits(info.context, self.prompt, k)]

    @strawberry.field(
        description="The k highest (node, token) entries over every layer. ACTIVATION: the node's value (heads: "
        "attention write norm summed over keys); WRITE_NORM: value x norm of its write to the residual stream; "
        "ACT_TIMES_GRAD: value x gradient of logitDiff(targetTokens, distractorTokens), which is then required. "
        "Latent kinds rank the loaded autoencoder's latents."
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

    @strawberry.field(description="One node's values on this prompt (after the ablations), as Node.activations.")
    async def activations(self, info: Info[Context, None], node_id: strawberry.ID) -> ActivationRecord | None:
        node = resolve_node(info.context, str(node_id))
        view, provenance = await live_resolvers.node_activations(info.context, node, self.prompt)
        return ActivationRecord.of(view, provenance)


@strawberry.type(description="Counters of the inference engine (for tests and monitoring).")
class EngineStats:
    forward_count: int = strawberry.field(description="Forward passes run since start (an OOM retry counts each).")
    oom_count: int
    max_batch_size: int
    max_batch_wait_ms: float


@strawberry.type
class LiveQuery:
    @strawberry.field(description="Run a prompt through the live model, optionally with ablations.")
    def prompt(
        self, info: Info[Context, None], text: str, ablations: list[AblationInput] | None = None
    ) -> PromptAnalysis | None:
        specs = [AblationSpec(str(a.node_id), tuple(a.token_indices or ()), float(a.value)) for a in ablations or []]
        prompt = live_resolvers.prepare_prompt(info.context, text, specs)
        return PromptAnalysis(text=text, tokens=prompt.token_strings, token_ids=list(prompt.tokens), prompt=prompt)

    @strawberry.field(description="The inference engine's counters; null without a model.")
    def engine_stats(self, info: Info[Context, None]) -> EngineStats | None:
        engine = info.context.services.engine
        if engine is None:
            return None
        return EngineStats(
            forward_count=engine.forward_count,
            oom_count=engine.oom_count,
            max_batch_size=engine.max_batch_size,
            max_batch_wait_ms=engine.max_wait_s * 1000.0,
        )
